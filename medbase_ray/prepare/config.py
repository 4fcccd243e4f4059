"""Configs of the prepare stage and of the mixture."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medbase_ray.config_base import StrictModel


class PrepareConfig(StrictModel):
    # Conversation records: a directory or file (ApolloCorpus JSON, JSONL, Parquet);
    # None: the bundled SFT sample.
    inputs: list[str] = Field(default_factory=list)
    seq_len: int = Field(default=512, ge=16)
    packing: Literal["best_fit", "next_fit", "none"] = "best_fit"
    # best_fit looks for the best bin among this many open rows (bounded memory).
    pack_window: int = Field(default=256, ge=1)
    overlong: Literal["truncate", "drop"] = "truncate"
    batch_size: int = Field(default=256, ge=1)
    rows_per_shard: int = Field(default=4096, ge=1)


class MixtureSpec(StrictModel):
    # Weights by source or by language; empty: every source in proportion to its size.
    by: Literal["source", "language"] = "language"
    weights: dict[str, float] = Field(default_factory=dict)
    # Apollo's data_epoch: how many times a source is repeated (fractions allowed).
    epochs: dict[str, float] = Field(default_factory=dict)
    # Temperature sampling p_i ∝ n_i^alpha (alpha=1: proportional; 0: uniform).
    temperature_alpha: float | None = Field(default=None, ge=0, le=1)
    token_budget: int | None = Field(default=None, ge=1)
    seed: int = 0
