"""Config of the evaluation stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medbase_ray.config_base import StrictModel


class EvalConfig(StrictModel):
    # XMedBench-format file or directory; None: the bundled sample benchmark.
    benchmark: str | None = None
    split: str = "test"
    dev_split: str = "dev"
    mode: Literal["generate", "loglikelihood", "cloze"] = "cloze"
    k_shot: int = Field(default=3, ge=0)
    max_prompt_tokens: int = Field(default=1536, ge=16)
    max_new_tokens: int = Field(default=128, ge=1)
    # Reproduce the Apollo code exactly (Chinese questions with the English template).
    apollo_compat: bool = False
    # Endpoint (any OpenAI-compatible server); None: run the checkpoint in-process.
    base_url: str | None = None
    api_key_env: str = "MEDBASE_API_KEY"
    max_in_flight: int = Field(default=16, ge=1)
    # Language of sources outside the XMedBench map.
    source_languages: dict[str, str] = Field(default_factory=dict)
    bootstrap_samples: int = Field(default=1000, ge=0)
    seed: int = 0
