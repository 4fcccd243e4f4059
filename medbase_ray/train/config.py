"""Config of the train stage (Apollo's SFT recipe as defaults)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medbase_ray.config_base import StrictModel


class TrainConfig(StrictModel):
    num_workers: int = Field(default=2, ge=1)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = Field(default_factory=lambda: {"CPU": 1})
    zero_stage: Literal[0, 1, 2, 3] = 1
    offload_optimizer: bool = False
    offload_params: bool = False
    micro_batch_size: int = Field(default=4, ge=1)
    grad_accum_steps: int = Field(default=1, ge=1)
    # Apollo: AdamW, lr 1e-5, weight decay 0.1 (not on biases/norms), cosine, 3% warmup, clip 1.0.
    lr: float = Field(default=1e-5, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    clip_grad_norm: float = Field(default=1.0, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    # CPU: torch's AdamW instead of DeepSpeed's JIT-compiled fused op (a minute of gcc).
    torch_adam: bool = True
    log_steps: int = Field(default=10, ge=1)
    eval_steps: int | None = Field(default=None, ge=1)
    save_steps: int | None = Field(default=None, ge=1)
    keep_last: int = Field(default=2, ge=1)
    max_failures: int = Field(default=0, ge=-1)
    storage_path: str | None = None
    seed: int = 0
