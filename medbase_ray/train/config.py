"""Config of the train stage (Apollo's SFT recipe as defaults).

The DeepSpeed config is not written by hand: `medbase_ray.train.deepspeed_config`
derives it from these few knobs and Ray's world size, so the batch arithmetic always
agrees (global batch = micro_batch_size x grad_accum_steps x num_workers). The precision
is `model.dtype` (one setting for train, serve and eval): DeepSpeed's bf16/fp16 modes
follow from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel


class TrainConfig(StrictModel):
    num_workers: int = Field(
        default=2,
        ge=1,
        description=(
            "Scaling: the same config runs on a laptop's local Ray and on a multi-node cluster."
        ),
    )
    use_gpu: bool = Field(default=False, description="One GPU per Ray Train worker.")
    resources_per_worker: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1},
        description="Ray resources each worker reserves, e.g. {CPU: 1} or {CPU: 8, GPU: 1}.",
    )
    zero_stage: Literal[0, 1, 2, 3] = Field(
        default=1,
        description=(
            "DeepSpeed ZeRO: 0 (plain data parallel), 1 (optimizer states sharded), 2 (+ "
            "gradients), 3 (+ parameters); offload moves optimizer states / parameters to CPU"
            " memory."
        ),
    )
    offload_optimizer: bool = Field(
        default=False, description="ZeRO offload of the optimizer state to CPU memory."
    )
    offload_params: bool = Field(
        default=False, description="ZeRO-3 offload of the parameters to CPU memory."
    )
    micro_batch_size: int = Field(
        default=4, ge=1, description="Packed rows per worker per forward pass."
    )
    grad_accum_steps: int = Field(
        default=1,
        ge=1,
        description=(
            "Micro-batches per optimizer step (global batch = micro_batch_size x "
            "grad_accum_steps x num_workers)."
        ),
    )
    lr: float = Field(
        default=1e-5,
        gt=0,
        description=(
            "Apollo: AdamW, lr 1e-5, weight decay 0.1 (not on biases/norms), cosine, 3% "
            "warmup, clip 1.0."
        ),
    )
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Learning-rate schedule after the warmup."
    )
    weight_decay: float = Field(default=0.1, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field(default=(0.9, 0.999), description="AdamW betas.")
    adam_eps: float = Field(default=1e-8, gt=0, description="AdamW epsilon.")
    warmup_ratio: float = Field(
        default=0.03,
        ge=0,
        lt=1,
        description="Fraction of the steps spent warming the learning rate up from 0.",
    )
    clip_grad_norm: float = Field(
        default=1.0, gt=0, description="Gradient clipping by global norm."
    )
    epochs: float = Field(
        default=1.0,
        gt=0,
        description="Passes over the mixed rows (fractions allowed); max_steps, when set, wins.",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many optimizer steps (None: the epochs decide).",
    )
    shuffle_buffer_rows: int = Field(
        default=1024,
        ge=0,
        description=(
            "Rows of each worker's shuffle buffer: every epoch is read in a new order, seeded"
            " by (seed, epoch) as Hugging Face's Trainer does (a buffer at least the shard's "
            "size gives a full permutation). 0: every epoch in the mixture's order."
        ),
    )
    head_on_label_tokens: bool = Field(
        default=True,
        description=(
            "Run the output head only at positions followed by a label token (prompt tokens "
            "and padding never reach it): less compute, and logits of [label tokens, vocab] "
            "instead of [rows, seq_len, vocab]. false: the model's own loss on full logits."
        ),
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass (less memory, ~30% more compute).",
    )
    torch_adam: bool = Field(
        default=True,
        description=(
            "CPU: torch's AdamW instead of DeepSpeed's JIT-compiled fused op (a minute of gcc)."
        ),
    )
    log_steps: int = Field(
        default=10,
        ge=1,
        description=(
            "Every log_steps optimizer steps: metrics through ray.train.report (CSV, TensorBoard)."
        ),
    )
    eval_steps: int | None = Field(
        default=None,
        ge=1,
        description="Dev loss every eval_steps (and at the end) when dev data is given.",
    )
    dev_benchmark: bool = Field(
        default=False,
        description=(
            "At the same points: multiple-choice accuracy on the eval benchmark's dev split "
            "(cfg.eval's benchmark and mode, no shots), scored by the eval stage on rank 0."
        ),
    )
    save_steps: int | None = Field(
        default=None,
        ge=1,
        description=(
            "A checkpoint every save_steps and always one at the end; the last keep_last are kept."
        ),
    )
    keep_last: int = Field(default=2, ge=1, description="Checkpoints kept (the newest).")
    max_failures: int = Field(
        default=0,
        ge=-1,
        description=(
            "Worker-group restarts from the last checkpoint before the run gives up (-1: no limit)."
        ),
    )
    storage_path: str | None = Field(
        default=None,
        description="Where checkpoints go (local directory or cloud URI); None: <run>/train.",
    )
    seed: int = Field(default=0, description="Random seed of the training run.")
    probe_tokens: int = Field(
        default=0,
        ge=0,
        description=(
            "> 0: the run also returns the trained model's logits on the first probe_tokens "
            "tokens of a training row, to check that the exported checkpoint reproduces it."
        ),
    )

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
