"""Config of the rewrite (back-translation) stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medbase_ray.config_base import StrictModel


class RewriteConfig(StrictModel):
    # Raw text records (ApolloCorpus *_text.json, JSONL or Parquet); None: bundled sample.
    input: str | None = None
    tasks: list[Literal["qa", "dialogue", "translate"]] = Field(default_factory=lambda: ["qa"])
    # Teacher: any OpenAI-compatible endpoint. The key is read from the environment
    # variable named here, never from a file.
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "medbase-tiny"
    api_key_env: str = "OPENAI_API_KEY"
    max_in_flight: int = Field(default=64, ge=1)
    qps: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=5, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    # translate: target languages (ISO 639-1) and the round-trip chrF threshold.
    target_languages: list[str] = Field(default_factory=list)
    chrf_threshold: float = Field(default=40.0, ge=0, le=100)
    min_turn_chars: int = Field(default=2, ge=1)
    max_turn_chars: int = Field(default=4000, ge=1)
    # Prompt set (YAML); None: the shipped prompts.
    prompts_file: str | None = None
