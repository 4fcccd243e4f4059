"""Config of the Serve deployment (OpenAI-compatible endpoint)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel


class AutoscalingConfig(StrictModel):
    """Ray Serve's autoscaling: replicas follow the ongoing requests per replica."""

    min_replicas: int = Field(
        default=1, ge=0, description="Fewest replicas (0: scale to zero when idle)."
    )
    max_replicas: int = Field(default=1, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(
        default=8, gt=0, description="Requests in flight per replica the autoscaler aims for."
    )

    @model_validator(mode="after")
    def _check_range(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})"
            )
        return self


class ServeConfig(StrictModel):
    host: str = Field(
        default="127.0.0.1",
        description="Loopback by default; a cluster deployment sets 0.0.0.0 explicitly.",
    )
    port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="HTTP port of Serve's proxy (one per Ray cluster, shared by every app).",
    )
    route_prefix: str = Field(
        default="/", description="URL path the app is served under (`/` -> http://host:port/v1)."
    )
    model_id: str | None = Field(
        default=None,
        description='The name clients put in "model"; None: derived from the checkpoint directory.',
    )

    max_batch_size: int = Field(
        default=8,
        ge=1,
        description="Batching (@serve.batch): one batch item is one sequence (a prompt x one of `n`).",
    )
    batch_wait_timeout_s: float = Field(
        default=0.01, ge=0, description="Seconds a batch waits to fill before it runs."
    )

    max_ongoing_requests: int = Field(
        default=64,
        ge=1,
        description=(
            "Load: requests in flight per replica; beyond that they wait in the proxy's "
            "queue, and beyond `max_queued_requests` they get 503 with `Retry-After` (not an "
            "OOM)."
        ),
    )
    max_queued_requests: int = Field(
        default=256, ge=1, description="Requests waiting beyond max_ongoing_requests before 503s."
    )
    retry_after_s: float = Field(
        default=1.0, ge=0, description="Retry-After of a 503 when the queue is full."
    )

    num_replicas: int | None = Field(
        default=1,
        ge=1,
        description=(
            "Replicas: a fixed number, or autoscaling (then num_replicas must be null; both "
            "null: one replica)."
        ),
    )
    autoscaling: AutoscalingConfig | None = None
    num_cpus: float = Field(default=1, ge=0, description="CPUs each replica reserves.")
    num_gpus: float = Field(
        default=0, ge=0, description="GPUs each replica reserves (fractions share one GPU)."
    )

    context_tokens: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Request limits, checked before any work (a 400 naming the field otherwise). "
            "None: the model's own context (max_position_embeddings)."
        ),
    )
    chat_max_tokens_default: int = Field(
        default=256,
        ge=1,
        description="Chat requests without max_tokens get this many, capped by the context left.",
    )
    max_logprobs: int = Field(
        default=20, ge=0, description="Most top_logprobs a request may ask for."
    )
    max_choices_per_request: int = Field(
        default=64, ge=1, description="Sequences one request may ask for: prompts x n."
    )

    access_log: bool = Field(
        default=True,
        description=(
            "Serve's per-request access log lines (method, route, status, latency; no headers)."
        ),
    )

    api_key_env: str = Field(
        default="MEDBASE_API_KEY",
        description=(
            "Bearer key: read from this environment variable when the app is built; only its "
            "SHA-256 digest reaches the replicas, and neither is ever logged."
        ),
    )

    @model_validator(mode="after")
    def _check_replicas(self) -> ServeConfig:
        if self.autoscaling is not None and self.num_replicas is not None:
            raise ValueError("set serve.num_replicas to null when serve.autoscaling is set")
        return self

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of Serve's `Deployment.options` for this config."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "backpressure_config": {"status_code": 503, "retry_after_s": self.retry_after_s},
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "logging_config": {"enable_access_log": self.access_log},
        }
        if self.autoscaling is not None:
            options["autoscaling_config"] = self.autoscaling.model_dump()
        else:
            options["num_replicas"] = self.num_replicas or 1
        return options
