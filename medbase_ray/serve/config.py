"""Config of the Serve deployment (OpenAI-compatible endpoint)."""

from __future__ import annotations

from pydantic import Field

from medbase_ray.config_base import StrictModel


class AutoscalingConfig(StrictModel):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=8, gt=0)


class ServeConfig(StrictModel):
    # Loopback by default; a cluster deployment sets 0.0.0.0 explicitly.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    route_prefix: str = "/"
    # The name clients put in "model"; None: derived from the checkpoint directory.
    model_id: str | None = None
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    max_ongoing_requests: int = Field(default=64, ge=1)
    num_replicas: int | None = Field(default=1, ge=1)
    autoscaling: AutoscalingConfig | None = None
    num_cpus: float = Field(default=1, ge=0)
    num_gpus: float = Field(default=0, ge=0)
    # Bearer key: read from this environment variable when set; never logged.
    api_key_env: str = "MEDBASE_API_KEY"
