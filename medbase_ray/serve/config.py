"""Config of the Serve deployment (OpenAI-compatible endpoint)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel


class AutoscalingConfig(StrictModel):
    """Ray Serve's autoscaling: replicas follow the ongoing requests per replica."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=8, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})"
            )
        return self


class ServeConfig(StrictModel):
    # Loopback by default; a cluster deployment sets 0.0.0.0 explicitly.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    route_prefix: str = "/"
    # The name clients put in "model"; None: derived from the checkpoint directory.
    model_id: str | None = None

    # Batching (@serve.batch): one batch item is one sequence (a prompt x one of `n`).
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)

    # Load: requests in flight per replica; beyond that they wait in the proxy's queue,
    # and beyond `max_queued_requests` they get 503 with `Retry-After` (not an OOM).
    max_ongoing_requests: int = Field(default=64, ge=1)
    max_queued_requests: int = Field(default=256, ge=1)
    retry_after_s: float = Field(default=1.0, ge=0)

    # Replicas: a fixed number, or autoscaling (then num_replicas must be null; both
    # null: one replica).
    num_replicas: int | None = Field(default=1, ge=1)
    autoscaling: AutoscalingConfig | None = None
    num_cpus: float = Field(default=1, ge=0)
    num_gpus: float = Field(default=0, ge=0)

    # Request limits, checked before any work (a 400 naming the field otherwise).
    # None: the model's own context (max_position_embeddings).
    context_tokens: int | None = Field(default=None, ge=1)
    # Chat requests without max_tokens get this many, capped by the context left.
    chat_max_tokens_default: int = Field(default=256, ge=1)
    max_logprobs: int = Field(default=20, ge=0)
    # Sequences one request may ask for: prompts x n.
    max_choices_per_request: int = Field(default=64, ge=1)

    # Serve's per-request access log lines (method, route, status, latency; no headers).
    access_log: bool = True

    # Bearer key: read from this environment variable when the app is built; only its
    # SHA-256 digest reaches the replicas, and neither is ever logged.
    api_key_env: str = "MEDBASE_API_KEY"

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
