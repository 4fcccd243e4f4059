"""Checkpoints: a Hugging Face model directory plus DeepSpeed's training state.

One checkpoint directory (`checkpoint_step_000040/`) is both:

    config.json, model.safetensors, generation_config.json   the trained model
    tokenizer.json, tokenizer_config.json, chat_template...   its tokenizer (Apollo template)
    medbase_config.yaml       the resolved pipeline config the run was made with: chat
                              format, dtype, seq_len (models.checkpoint_info reads it)
    medbase_train.json        step, epoch, data position, step plan (what resume reads)
    training_state/           DeepSpeed's checkpoint (ZeRO shards of every worker)

so `AutoModelForCausalLM.from_pretrained(ckpt)`, `medbase serve ckpt` and `medbase eval`
load it as it is (with its chat format, dtype and tokenizer), and `--resume` restores
the exact optimizer, schedule and data position. Every worker writes its own files into a local directory and reports it;
Ray Train merges them into one directory in storage (the names never collide: DeepSpeed
names shards by rank).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medbase_ray import storage
from medbase_ray.models.checkpoint_info import CHECKPOINT_CONFIG

TRAINING_STATE_DIR = "training_state"
DEEPSPEED_TAG = "state"
TRAIN_META_FILE = "medbase_train.json"


def checkpoint_dir_name(step: int) -> str:
    return f"checkpoint_step_{step:06d}"


def export_model(engine, out_dir: Path, is_rank0: bool) -> None:
    """`save_pretrained` of the trained weights (collective under ZeRO-3: call on all ranks).

    Under ZeRO-3 every rank holds a slice of each weight; DeepSpeed gathers the 16-bit
    (or fp32 on CPU) weights on rank 0 (`stage3_gather_16bit_weights_on_model_save`).
    Under ZeRO 0-2 every rank holds the full weights, so rank 0 writes them.
    """
    state_dict = None
    if engine.zero_optimization_stage() == 3:
        state_dict = engine._zero3_consolidated_16bit_state_dict()
    if is_rank0:
        engine.module.save_pretrained(out_dir, state_dict=state_dict, safe_serialization=True)


def write_checkpoint(
    engine,
    out_dir: Path,
    *,
    is_rank0: bool,
    tokenizer,
    meta: dict[str, Any],
    config_yaml: str,
) -> None:
    """Write this rank's part of a checkpoint into `out_dir` (all ranks call it).

    meta: the training position (step, epoch, micro_batches_in_epoch) and step plan.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    export_model(engine, out_dir, is_rank0)
    if is_rank0:
        tokenizer.save_pretrained(out_dir)
        (out_dir / TRAIN_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        (out_dir / CHECKPOINT_CONFIG).write_text(config_yaml, encoding="utf-8")
    engine.save_checkpoint(str(out_dir / TRAINING_STATE_DIR), tag=DEEPSPEED_TAG)


def restore_checkpoint(engine, ckpt_dir: Path) -> dict[str, Any]:
    """Load weights, optimizer, schedule into `engine`; returns the saved train meta
    (the training position and step plan of medbase_train.json)."""
    state_dir = ckpt_dir / TRAINING_STATE_DIR
    if not state_dir.is_dir():
        raise FileNotFoundError(
            f"checkpoint {ckpt_dir} has no {TRAINING_STATE_DIR}/: it cannot be resumed "
            "(an exported model only?)"
        )
    load_path, _ = engine.load_checkpoint(str(state_dir), tag=DEEPSPEED_TAG)
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load the training state in {state_dir}")
    return read_train_meta(ckpt_dir)


def check_resumable(saved_plan: dict[str, int], plan: dict[str, int], ckpt: str) -> None:
    """Resuming needs the same step plan: same data, batch sizes and world size."""
    diff = {k: (saved_plan.get(k), v) for k, v in plan.items() if saved_plan.get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: {a} then, {b} now" for k, (a, b) in diff.items())
        raise ValueError(
            f"cannot resume from {ckpt}: the step plan changed ({shown}); resume with the "
            "same data, micro_batch_size, grad_accum_steps, num_workers and max_steps/epochs"
        )


def read_train_meta(ckpt: str | Path) -> dict[str, Any]:
    """The training position and step plan of a checkpoint (a local path or a URI)."""
    return json.loads(storage.read_bytes(storage.join(str(ckpt), TRAIN_META_FILE)))
