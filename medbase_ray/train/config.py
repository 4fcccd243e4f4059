"""Config of the train stage (Apollo's SFT recipe as defaults).

The DeepSpeed config is not written by hand: `medbase_ray.train.deepspeed_config`
derives it from these few knobs and Ray's world size, so the batch arithmetic always
agrees (global batch = micro_batch_size x grad_accum_steps x num_workers).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel


class TrainConfig(StrictModel):
    # Scaling: the same config runs on a laptop's local Ray and on a multi-node cluster.
    num_workers: int = Field(default=2, ge=1)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = Field(default_factory=lambda: {"CPU": 1})
    # DeepSpeed ZeRO: 0 (plain data parallel), 1 (optimizer states sharded), 2 (+ gradients),
    # 3 (+ parameters); offload moves optimizer states / parameters to CPU memory.
    zero_stage: Literal[0, 1, 2, 3] = 1
    offload_optimizer: bool = False
    offload_params: bool = False
    micro_batch_size: int = Field(default=4, ge=1)
    grad_accum_steps: int = Field(default=1, ge=1)
    # Apollo: AdamW, lr 1e-5, weight decay 0.1 (not on biases/norms), cosine, 3% warmup, clip 1.0.
    lr: float = Field(default=1e-5, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.1, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(default=1e-8, gt=0)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    clip_grad_norm: float = Field(default=1.0, gt=0)
    # Passes over the mixed rows (fractions allowed); max_steps, when set, wins.
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    # Rows of each worker's shuffle buffer: every epoch is read in a new order, seeded by
    # (seed, epoch) as Hugging Face's Trainer does (a buffer at least the shard's size
    # gives a full permutation). 0: every epoch in the mixture's order.
    shuffle_buffer_rows: int = Field(default=1024, ge=0)
    # auto: bf16 on GPU, fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    # CPU: torch's AdamW instead of DeepSpeed's JIT-compiled fused op (a minute of gcc).
    torch_adam: bool = True
    # Every log_steps optimizer steps: metrics through ray.train.report (CSV, TensorBoard).
    log_steps: int = Field(default=10, ge=1)
    # Dev loss every eval_steps (and at the end) when dev data is given.
    eval_steps: int | None = Field(default=None, ge=1)
    # At the same points: multiple-choice accuracy on the eval benchmark's dev split
    # (cfg.eval's benchmark and mode, no shots), scored by the eval stage on rank 0.
    dev_benchmark: bool = False
    # A checkpoint every save_steps and always one at the end; the last keep_last are kept.
    save_steps: int | None = Field(default=None, ge=1)
    keep_last: int = Field(default=2, ge=1)
    # Worker-group restarts from the last checkpoint before the run gives up (-1: no limit).
    max_failures: int = Field(default=0, ge=-1)
    # Where checkpoints go (local directory or cloud URI); None: <run>/train.
    storage_path: str | None = None
    seed: int = 0
    # > 0: the run also returns the trained model's logits on the first probe_tokens
    # tokens of a training row, to check that the exported checkpoint reproduces it.
    probe_tokens: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.offload_params and self.zero_stage != 3:
            raise ValueError(
                "offload_params needs zero_stage 3 (parameters are only sharded there)"
            )
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        if self.use_gpu and self.resources_per_worker.get("GPU", 1) <= 0:
            raise ValueError("use_gpu is set but resources_per_worker asks for no GPU")
        return self
