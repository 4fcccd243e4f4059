"""The DeepSpeed config, derived from TrainConfig and Ray's world size.

Users set a few knobs (micro batch, accumulation, clipping, ZeRO stage, offload, and
`model.dtype` for the precision); everything DeepSpeed checks for consistency is computed
here, so that `train_batch_size == micro x accum x world_size` holds by construction.
"""

from __future__ import annotations

from typing import Any

from medbase_ray.models.loading import resolve_dtype
from medbase_ray.train.config import TrainConfig


def build_deepspeed_config(
    train: TrainConfig,
    world_size: int,
    on_gpu: bool,
    total_steps: int | None = None,
    dtype: str = "auto",
) -> dict[str, Any]:
    """The `config` argument of `deepspeed.initialize` for this run.

    dtype: `model.dtype` ("auto", or the name the worker resolved): DeepSpeed's bf16 /
    fp16 modes follow from it. The optimizer is declared here (so DeepSpeed can shard and
    offload it); the learning rate schedule is passed to `deepspeed.initialize` as a
    callable, see `recipe.py`.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    dtype = resolve_dtype(dtype, on_gpu)
    if dtype == "float16" and not on_gpu:
        raise ValueError("model.dtype float16 needs a GPU to train; use float32 (or auto) on CPU")
    zero: dict[str, Any] = {"stage": train.zero_stage}
    if train.zero_stage >= 1:
        # Overlap the gradient reduction with the backward pass; contiguous buckets
        # avoid fragmentation (DeepSpeed's recommended settings for stages 1-3).
        zero.update({"overlap_comm": on_gpu, "contiguous_gradients": True})
    if train.zero_stage == 3:
        # save_pretrained needs the full weights: gather the 16-bit shards on rank 0.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    if train.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if train.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}

    optimizer_params: dict[str, Any] = {
        "lr": train.lr,
        "betas": list(train.adam_betas),
        "eps": train.adam_eps,
        # Per-group weight decay (none on biases and norms) comes from the param groups.
        "weight_decay": train.weight_decay,
    }
    if train.torch_adam:
        optimizer_params["torch_adam"] = True
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum_steps,
        "train_batch_size": train.micro_batch_size * train.grad_accum_steps * world_size,
        "gradient_clipping": train.clip_grad_norm,
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": optimizer_params},
        "bf16": {"enabled": dtype == "bfloat16"},
        # fp16 needs dynamic loss scaling (0: DeepSpeed's default dynamic scaler).
        "fp16": {"enabled": dtype == "float16", "loss_scale": 0, "initial_scale_power": 16},
        # ZeRO-Offload with torch's AdamW instead of DeepSpeedCPUAdam: slower, but no JIT build.
        "zero_force_ds_cpu_optimizer": not train.torch_adam,
        "steps_per_print": total_steps or 10**9,  # medbase logs its own metrics
        "wall_clock_breakdown": False,
    }
    return config
