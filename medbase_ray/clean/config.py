"""Config of the clean stage (decontamination against the benchmark, deduplication).

Defaults and why (docs/clean.md has the long form):
- 13 words: the n of GPT-3's and Llama's contamination checks. A benchmark field shorter
  than n but of at least 8 words is matched whole (GPT-3's floor of 8): exam questions
  are often 8-12 words (the bundled benchmark's median English question has 12).
- 20 characters for Chinese and text without spaces: a Chinese word is ~1.5 characters,
  so 20 characters say about what 13 words say; the floor of 12 characters matches the
  8-word floor. The bundled SFT data restates every benchmark fact, sharing runs of up
  to 13 characters (zh) and 12 words (fr) with the benchmark: the defaults flag none.
- MinHash 128 permutations over 5-character shingles, Jaccard 0.8: the usual near-dup
  setting of LLM corpora (e.g. SlimPajama, datatrove); characters work for every script.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel


class CleanConfig(StrictModel):
    enabled: bool = Field(
        default=False,
        description="Run clean before prepare (prepare then reads clean/conversations/).",
    )
    inputs: list[str] = Field(
        default_factory=list,
        description=(
            "Conversation inputs (ApolloCorpus dirs / JSON, JSONL, Parquet); [] = "
            "prepare.inputs, else the bundled sample corpus."
        ),
    )
    output: str | None = Field(
        default=None, description="Output directory; None = <run.root>/<run.name>/clean."
    )

    # -- decontamination ---------------------------------------------------------
    decontaminate: bool = Field(
        default=True,
        description="Remove (or flag) records sharing n-grams with the benchmark.",
    )
    extra_benchmarks: list[str] = Field(
        default_factory=list,
        description=(
            "The benchmark's test and dev splits from eval: (eval.benchmark, eval.split, "
            "eval.dev_split) are always checked; these are extra XMedBench files or dirs."
        ),
    )
    action: Literal["remove", "flag"] = Field(
        default="remove",
        description=(
            "remove: contaminated records go to the rejects; flag: they are kept and listed "
            "in flagged/ (and counted in the report)."
        ),
    )
    ngram_words: int = Field(
        default=13,
        ge=2,
        description="Decontamination: word n-gram length for space-separated languages.",
    )
    min_words: int = Field(
        default=8,
        ge=2,
        description=(
            "Decontamination: benchmark fields shorter than this many words are matched whole."
        ),
    )
    ngram_chars: int = Field(
        default=20, ge=2, description="Decontamination: character n-gram length for char_languages."
    )
    min_chars: int = Field(
        default=12,
        ge=2,
        description=(
            "Decontamination: benchmark fields shorter than this many characters are matched whole."
        ),
    )
    char_languages: list[str] = Field(
        default_factory=lambda: ["zh"],
        description="Languages tokenised by characters; any other text without spaces is too.",
    )
    fields: list[Literal["question", "options", "context"]] = Field(
        default_factory=lambda: ["question", "options", "context"],
        description="Benchmark fields whose n-grams are indexed.",
    )

    # -- deduplication -----------------------------------------------------------
    dedup: bool = Field(
        default=True,
        description="Remove exact and MinHash near-duplicate records (one kept per cluster).",
    )
    jaccard_threshold: float = Field(
        default=0.8,
        gt=0.0,
        lt=1.0,
        description=(
            "Near-duplicates: MinHash Jaccard similarity at or above which two records are "
            "one cluster."
        ),
    )
    num_perm: int = Field(
        default=128,
        ge=8,
        le=1024,
        description="Near-duplicates: MinHash permutations per signature.",
    )
    shingle_chars: int = Field(
        default=5, ge=1, description="Near-duplicates: character shingle length."
    )
    seed: int = Field(default=0, description="Seed of the MinHash permutations.")

    # -- execution -----------------------------------------------------------------
    batch_rows: int = Field(
        default=2048,
        ge=1,
        description="Rows per batch of the Ray Data map (worker memory ~ batch_rows x record).",
    )
    task_input_mb: int = Field(
        default=8,
        ge=1,
        description="Input bytes per read task (files are grouped up to this size).",
    )
    partition_input_mb: int = Field(
        default=64,
        ge=1,
        description=(
            "Input bytes per key partition of the dedup pass (one task each): the number of "
            "partitions grows with the corpus, so a task's memory (~5x this) does not."
        ),
    )
    num_workers: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Concurrent tasks of the annotate pass (each worker process holds the index); "
            "None = the cluster's CPUs."
        ),
    )
    top_items: int = Field(default=20, ge=0, description="Benchmark items listed in the report.")

    @model_validator(mode="after")
    def _floors_below_n(self) -> CleanConfig:
        problems = []
        if self.min_words > self.ngram_words:
            problems.append(f"min_words ({self.min_words}) > ngram_words ({self.ngram_words})")
        if self.min_chars > self.ngram_chars:
            problems.append(f"min_chars ({self.min_chars}) > ngram_chars ({self.ngram_chars})")
        if problems:
            raise ValueError("; ".join(problems))
        return self
