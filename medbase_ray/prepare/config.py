"""Configs of the prepare stage and of the mixture."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel


class PrepareConfig(StrictModel):
    inputs: list[str] = Field(
        default_factory=list,
        description=(
            "Conversation records: directories or files (ApolloCorpus JSON, JSONL, Parquet), "
            "or `hf:<dataset name or dir>[:<split>]` for a `datasets` dataset in the "
            "conversation contract. Empty: the bundled sample conversations."
        ),
    )
    source: str | None = Field(
        default=None,
        description=(
            "Source and language of rows whose file name and folders say neither (Apollo's "
            "`1.dev.jsonl`): `medbase prepare --source guidelines --language en`."
        ),
    )
    language: str | None = Field(
        default=None,
        description="With `source`: the language (ISO 639-1) of input that names none.",
    )
    seq_len: int = Field(
        default=512, ge=16, description="Tokens per packed row (the training context length)."
    )
    packing: Literal["best_fit", "next_fit", "none"] = Field(
        default="best_fit",
        description=(
            "best_fit: best-fit decreasing within a window (the default, least padding); "
            "next_fit: Apollo's order-preserving greedy (reproduction); none: one sample a "
            "row."
        ),
    )
    pack_window: int = Field(
        default=4096,
        ge=1,
        description=(
            "best_fit sorts and packs this many samples of one source at a time (a bounded "
            "window); rows of a window that are not full carry over into the next one."
        ),
    )
    overlong: Literal["truncate", "drop"] = Field(
        default="truncate",
        description=(
            "A sample longer than seq_len: cut to seq_len (counted) or dropped (counted, rejected)."
        ),
    )
    batch_size: int = Field(
        default=512,
        ge=1,
        description="Conversations per call of the fast tokenizer (map_batches batch size).",
    )
    task_input_mb: int = Field(
        default=8,
        ge=1,
        description=(
            "Input files are read in groups of about this many MiB, one Ray read task per "
            "group (files of one source together), streamed as blocks of about this many MiB "
            "of text that other tasks tokenize and pack: a file of any size is held a block "
            "at a time."
        ),
    )
    rows_per_shard: int = Field(default=4096, ge=1, description="Packed rows per Parquet shard.")
    row_group_rows: int = Field(
        default=256,
        ge=1,
        description="Rows per Parquet row group: the unit a mixture reads (and shuffles) at once.",
    )

    @model_validator(mode="after")
    def _check_language(self) -> PrepareConfig:
        # the registry is read only when validating: config modules stay leaves
        from medbase_ray.corpus.languages import LANGUAGES

        if self.language is not None and self.language not in LANGUAGES:
            raise ValueError(f"language: unknown {self.language!r}; known: {', '.join(LANGUAGES)}")
        return self


MIXTURE_PRESETS_PACKAGE = "medbase_ray.prepare"


def mixture_preset_path(name: str) -> Path:
    """A shipped mixture preset (`medbase_ray/prepare/presets/<name>.yaml`)."""
    root = resources.files(MIXTURE_PRESETS_PACKAGE) / "presets"
    path = Path(str(root / f"{name}.yaml"))
    if not path.exists():
        known = sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))
        raise ValueError(f"unknown mixture preset {name!r}; shipped: {', '.join(known)}")
    return path


class MixtureSpec(StrictModel):
    """Which packed rows a run trains on, resolved deterministically from prepared sources.

    Sources are named `{source}_{language}` as in the manifest (Apollo's names, e.g.
    `medicalExam_en`). Keys of `weights` (by source), `epochs` and `priority` are such a
    name, a bare source (`medicalExam`: every language) or a glob (`*_en`).
    """

    preset: str | None = Field(
        default=None,
        description="A shipped preset (e.g. `apollo`) whose fields fill the ones not given here.",
    )
    by: Literal["source", "language"] = Field(
        default="language",
        description=(
            "Weights by source or by language (ISO 639-1 codes); empty: every source in "
            "proportion to its tokens x epochs. A source or language left out of non-empty "
            "weights gets none of the budget."
        ),
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Shares of the mixture per unit of `by` (normalised); empty: see temperature_alpha."
        ),
    )
    epochs: dict[str, float] = Field(
        default_factory=dict,
        description="Apollo's data_epoch: how many times a source is repeated (fractions allowed).",
    )
    priority: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Apollo's data_priority: the order rows are drawn in (weighted sampling without "
            "replacement), so high-priority sources come early; it changes no amounts."
        ),
    )
    temperature_alpha: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Temperature sampling p_i ∝ n_i^alpha over the units of `by` (1: proportional, 0:"
            " uniform); only when no weights are given."
        ),
    )
    token_budget: int | None = Field(
        default=None,
        ge=1,
        description="Total real tokens of the mixture; None: as many as the sources x epochs hold.",
    )
    seed: int = Field(default=0, description="Seed of the row selection and order.")
    shuffle_chunks: int = Field(
        default=8,
        ge=1,
        description=(
            "Chunks (one pass over one Parquet row group each) read together and shuffled as "
            "one block: a seeded shuffle buffer of up to this x prepare.row_group_rows rows."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        preset = yaml.safe_load(mixture_preset_path(data["preset"]).read_text(encoding="utf-8"))
        return {**preset, **data}

    @model_validator(mode="after")
    def _check(self) -> MixtureSpec:
        problems = []
        for name in ("weights", "epochs", "priority"):
            bad = {k: v for k, v in getattr(self, name).items() if not v >= 0}
            if bad:
                problems.append(f"{name}: negative values {bad}")
        if self.priority and any(v == 0 for v in self.priority.values()):
            problems.append("priority: values must be > 0")
        if self.weights and not any(v > 0 for v in self.weights.values()):
            problems.append("weights: at least one must be > 0")
        if self.weights and self.temperature_alpha is not None:
            problems.append("give either weights or temperature_alpha, not both")
        if self.by == "language" and self.weights:
            # the registry is read only when validating: config modules stay leaves
            from medbase_ray.corpus.languages import LANGUAGES

            unknown = sorted(set(self.weights) - set(LANGUAGES))
            if unknown:
                problems.append(f"weights: unknown languages {unknown}; known: {list(LANGUAGES)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load_mixture_spec(path_or_preset: str | Path) -> MixtureSpec:
    """A MixtureSpec from a YAML file or the name of a shipped preset."""
    path = Path(path_or_preset)
    if path.suffix not in (".yaml", ".yml"):
        path = mixture_preset_path(str(path_or_preset))
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"mixture spec {path} must be a mapping")
    return MixtureSpec.model_validate(data)
