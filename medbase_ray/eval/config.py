"""Config of the evaluation stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medbase_ray.config_base import StrictModel


class EvalConfig(StrictModel):
    benchmark: str | None = Field(
        default=None,
        description=(
            "XMedBench-format file or directory; None: the bundled sample benchmark. A "
            "directory holds `{split}.json` (or a `{split}/` folder of JSON files) per split."
        ),
    )
    split: str = Field(default="test", description="The benchmark split that is scored.")
    dev_split: str = Field(
        default="dev",
        description="The split the few-shot examples (and the tune/train dev score) come from.",
    )
    dev_benchmark: str | None = Field(
        default=None,
        description=(
            "The shots' file or directory when `benchmark` is a single file (None: no dev split)."
        ),
    )
    mode: Literal["generate", "loglikelihood", "cloze"] = Field(
        default="cloze",
        description=(
            "cloze: the option text's likelihood after the question; loglikelihood: the "
            "answer letter's; generate: a generated answer, letter extracted."
        ),
    )
    k_shot: int = Field(
        default=3,
        ge=0,
        description=(
            "Shots per item, drawn (seeded) from the dev split; fewer when the prompt is too long."
        ),
    )
    max_prompt_tokens: int = Field(
        default=1536,
        ge=16,
        description="Prompts longer than this drop shots, then are counted as over-length.",
    )
    max_new_tokens: int = Field(
        default=128, ge=1, description="Apollo generated up to 128 new tokens (greedy)."
    )
    min_new_tokens: int = Field(
        default=0,
        ge=0,
        description=(
            "Generate at least this many tokens (end-of-text suppressed until then); 0: stop "
            "at end-of-text. Through an endpoint it is sent as `min_tokens` (vLLM's "
            "extension), only when > 0. benchmarks/eval.py sets it to max_new_tokens to time "
            "full generations."
        ),
    )
    apollo_compat: bool = Field(
        default=False,
        description=(
            "Reproduce Apollo's evaluation exactly (generate mode; eval/apollo.py): its "
            "prompts per source, shots drawn from the same source within 4,096 characters, "
            "longer prompts skipped and counted, the first answer letter as key, "
            "generate_score.py's extraction, zero-correct sources dropped from averages."
        ),
    )
    base_url: str | None = Field(
        default=None,
        description="Endpoint (any OpenAI-compatible server); None: run the checkpoint in-process.",
    )
    model_name: str | None = Field(
        default=None,
        description='The "model" sent to the endpoint; None: the first id of its GET /v1/models.',
    )
    api_key_env: str = Field(
        default="MEDBASE_API_KEY",
        description="Environment variable holding the endpoint's API key.",
    )
    max_in_flight: int = Field(default=16, ge=1, description="Requests in flight to the endpoint.")
    batch_size: int = Field(
        default=16,
        ge=1,
        description=(
            "In-process (and Ray actor) loglikelihood/cloze: items scored in one forward, "
            "taken longest prompt first as lm-eval does, so a batch holds little padding. "
            "The batches are fixed by the items, never by timing: a re-run gives the same "
            "figures. 1: one item per forward."
        ),
    )
    max_batch_tokens: int = Field(
        default=8192,
        ge=1,
        description=(
            "In-process: at most this many padded prompt tokens in one forward (a batch of "
            "long few-shot prompts is cut shorter than batch_size)."
        ),
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        description="Retries of a failed request, done by the openai client (exponential back-off).",
    )
    request_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Seconds one request may take before the client retries it.",
    )
    device: str = Field(
        default="auto",
        description='In-process only: where the checkpoint runs ("auto": cuda when there is one).',
    )
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "In-process on CPU: torch threads while scoring (None: torch's default). On a "
            "shared, busy machine 1 is faster: OpenMP threads otherwise spin against other "
            "jobs."
        ),
    )
    source_languages: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Language of sources outside the XMedBench map (one of the six: en zh es fr ar hi)."
        ),
    )
    bootstrap_samples: int = Field(
        default=1000, ge=0, description="Bootstrap resamples for the 95% intervals (0: none)."
    )
    seed: int = Field(default=0, description="Seed of the shots and the bootstrap.")
