"""Config of the evaluation stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medbase_ray.config_base import StrictModel


class EvalConfig(StrictModel):
    # XMedBench-format file or directory; None: the bundled sample benchmark. A directory
    # holds `{split}.json` (or a `{split}/` folder of JSON files) per split.
    benchmark: str | None = None
    split: str = "test"
    dev_split: str = "dev"
    # The shots' file or directory when `benchmark` is a single file (None: no dev split).
    dev_benchmark: str | None = None
    mode: Literal["generate", "loglikelihood", "cloze"] = "cloze"
    # Shots per item, drawn (seeded) from the dev split; fewer when the prompt is too long.
    k_shot: int = Field(default=3, ge=0)
    max_prompt_tokens: int = Field(default=1536, ge=16)
    # Apollo generated up to 128 new tokens (greedy).
    max_new_tokens: int = Field(default=128, ge=1)
    # Generate at least this many tokens (end-of-text suppressed until then); 0: stop at
    # end-of-text. Through an endpoint it is sent as `min_tokens` (vLLM's extension),
    # only when > 0. benchmarks/eval.py sets it to max_new_tokens to time full generations.
    min_new_tokens: int = Field(default=0, ge=0)
    # Reproduce the Apollo code exactly: Chinese questions with the English template
    # (the shots stay Chinese) and "from A to D" in every instruction.
    apollo_compat: bool = False
    # Endpoint (any OpenAI-compatible server); None: run the checkpoint in-process.
    base_url: str | None = None
    # The "model" sent to the endpoint; None: the first id of its GET /v1/models.
    model_name: str | None = None
    api_key_env: str = "MEDBASE_API_KEY"
    max_in_flight: int = Field(default=16, ge=1)
    # Retries of a failed request, done by the openai client (exponential back-off).
    max_retries: int = Field(default=3, ge=0)
    request_timeout_s: float = Field(default=300.0, gt=0)
    # In-process only: where the checkpoint runs ("auto": cuda when there is one).
    device: str = "auto"
    # In-process on CPU: torch threads while scoring (None: torch's default). On a
    # shared, busy machine 1 is faster: OpenMP threads otherwise spin against other jobs.
    cpu_threads: int | None = Field(default=None, ge=1)
    # Language of sources outside the XMedBench map (one of the six: en zh es fr ar hi).
    source_languages: dict[str, str] = Field(default_factory=dict)
    bootstrap_samples: int = Field(default=1000, ge=0)
    seed: int = 0
