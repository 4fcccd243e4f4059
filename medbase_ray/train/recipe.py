"""The pieces of Apollo's SFT recipe: parameter groups, learning-rate schedule, step plan.

Apollo (Wang et al. 2024, "Apollo: Lightweight Multilingual Medical LLMs") fine-tunes
with AdamW, lr 1e-5, weight decay 0.1, a cosine schedule with 3% warmup and gradient
clipping at 1.0 -- Hugging Face Trainer's defaults for decay exclusion (biases, norms).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from transformers import get_scheduler

from medbase_ray.train.config import TrainConfig


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: weight decay on matrices, none on biases and norm weights.

    A 1-D parameter is a bias or a norm scale in every transformer block (transformers'
    Trainer uses the same rule through `get_parameter_names(..., ALL_LAYERNORM_LAYERS)`).
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # ZeRO-3's zero.Init leaves a 0-numel placeholder: its full shape is ds_shape.
        shape = getattr(param, "ds_shape", param.shape)
        (no_decay if len(shape) < 2 or name.endswith(".bias") else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_lr_scheduler(optimizer, name: str, total_steps: int, warmup_steps: int):
    """transformers' schedules (what Apollo's Trainer used): linear warmup, then decay."""
    if name == "constant":
        name = "constant_with_warmup"
    return get_scheduler(
        name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps
    )


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run makes, computed once on the driver.

    Each worker reads `rows_per_worker` rows per epoch (Ray's equal split), in
    micro-batches of `micro_batch_size`; `grad_accum_steps` micro-batches make a step.
    """

    world_size: int
    rows_per_worker: int
    micro_batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def plan_steps(total_rows: int, world_size: int, train: TrainConfig) -> StepPlan:
    """The step plan for `total_rows` rows split over `world_size` workers."""
    rows_per_worker = total_rows // world_size
    micro_batches = rows_per_worker // train.micro_batch_size
    steps_per_epoch = micro_batches // train.grad_accum_steps
    global_batch = train.micro_batch_size * train.grad_accum_steps * world_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"{total_rows} rows make no full step of {global_batch} rows "
            f"(micro_batch_size {train.micro_batch_size} x grad_accum_steps "
            f"{train.grad_accum_steps} x {world_size} workers): give more data or a smaller batch"
        )
    if train.max_steps is not None:
        total = train.max_steps
    else:
        total = max(1, math.ceil(train.epochs * steps_per_epoch))
    return StepPlan(
        world_size=world_size,
        rows_per_worker=rows_per_worker,
        micro_batches_per_epoch=micro_batches,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        warmup_steps=math.ceil(train.warmup_ratio * total),
    )
