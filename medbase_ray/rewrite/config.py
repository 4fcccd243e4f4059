"""Config of the rewrite (back-translation) stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel

Task = Literal["qa", "dialogue", "translate"]


class RewriteConfig(StrictModel):
    input: str | None = Field(
        default=None,
        description=(
            "Raw text records (ApolloCorpus *_text.json, JSONL or Parquet); None: bundled "
            'sample. With tasks == ["translate"] only, this is read as conversation records '
            "instead."
        ),
    )
    source: str | None = Field(
        default=None,
        description=(
            "Source and language of rows whose file name and folders say neither (Apollo's "
            "`guidelines_en/data/1.dev.jsonl` has them in a folder name; a bare `texts.jsonl`"
            " has none): `medbase rewrite --source guidelines --language en`."
        ),
    )
    language: str | None = Field(
        default=None,
        description="With `source`: the language (ISO 639-1) of input that names none.",
    )
    tasks: list[Task] = Field(
        default_factory=lambda: ["qa"],
        min_length=1,
        description=(
            "What the teacher writes from each passage: qa (question + answer), dialogue "
            "(patient-doctor turns), translate (into target_languages)."
        ),
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000/v1",
        description=(
            "Teacher: any OpenAI-compatible endpoint. The key is read from the environment "
            "variable named here, never from a file (and never logged)."
        ),
    )
    model: str = Field(
        default="tiny",
        description='"tiny": what `medbase serve` calls the embedded model, so the two work together.',
    )
    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description=(
            "Environment variable holding the teacher's API key (never read from a file, "
            "never logged)."
        ),
    )
    max_in_flight: int = Field(
        default=64,
        ge=1,
        description=(
            "Requests in flight over the whole run (split evenly across the actors) and an "
            "optional cap on requests started per second (also split)."
        ),
    )
    qps: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Optional cap on requests started per second over the run (split across the actors)."
        ),
    )
    max_retries: int = Field(
        default=5,
        ge=0,
        description=(
            "Retries of 429 (after Retry-After), 5xx, timeouts and connection errors are the "
            "openai client's own (exponential backoff with jitter); these are its settings."
        ),
    )
    timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds one teacher request may take before the client retries it.",
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="Teacher sampling temperature.")
    max_tokens: int = Field(
        default=512, ge=1, description="Most tokens the teacher may write per request."
    )
    target_languages: list[str] = Field(
        default_factory=list,
        description="translate: target languages (ISO 639-1) and the round-trip chrF threshold.",
    )
    chrf_threshold: float = Field(
        default=40.0,
        ge=0,
        le=100,
        description="translate: the round-trip chrF below which a translation is rejected.",
    )
    min_turn_chars: int = Field(
        default=2, ge=1, description="A parsed turn shorter than this is rejected."
    )
    max_turn_chars: int = Field(
        default=4000, ge=1, description="A parsed turn longer than this is rejected."
    )
    max_input_chars: int = Field(
        default=8000,
        ge=1,
        description=(
            "Passages longer than this are rejected (too_long) before any request, as Apollo "
            "skipped prompts over ~4k characters."
        ),
    )
    prompts_file: str | None = Field(
        default=None, description="Prompt set (YAML); None: the shipped prompts (Apollo's)."
    )
    num_actors: int = Field(
        default=2,
        ge=1,
        description=(
            "Ray Data: actors that each run one asyncio loop with an AsyncOpenAI client, and "
            "how many CPUs each reserves (they mostly wait on the network)."
        ),
    )
    actor_num_cpus: float = Field(
        default=0.25,
        gt=0,
        description="CPUs each rewrite actor reserves (they mostly wait on the network).",
    )
    rows_per_block: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Items per Ray Data block (one actor call); None: the actor's share of "
            "max_in_flight. Small blocks keep the actors evenly busy to the end of a run."
        ),
    )
    rows_per_shard: int = Field(
        default=2048,
        ge=1,
        description=(
            "Finished items are written as one atomic shard every rows_per_shard items or "
            "flush_s seconds, whichever comes first (a killed run redoes only unwritten "
            "items)."
        ),
    )
    flush_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds after which finished items are written even if rows_per_shard is not reached."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> RewriteConfig:
        # the registry is read only when validating: config modules stay leaves
        from medbase_ray.corpus.languages import LANGUAGES

        problems = []
        if len(set(self.tasks)) != len(self.tasks):
            problems.append(f"tasks: listed twice in {self.tasks}")
        if self.language is not None and self.language not in LANGUAGES:
            problems.append(f"language: unknown {self.language!r}; known: {', '.join(LANGUAGES)}")
        unknown = [c for c in self.target_languages if c not in LANGUAGES]
        if unknown:
            problems.append(f"target_languages: unknown {unknown}; known: {', '.join(LANGUAGES)}")
        if "translate" in self.tasks and not self.target_languages:
            problems.append("target_languages: the translate task needs at least one")
        if self.min_turn_chars > self.max_turn_chars:
            problems.append("min_turn_chars is larger than max_turn_chars")
        if problems:
            raise ValueError("; ".join(problems))
        return self
