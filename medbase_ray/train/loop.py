"""One worker's supervised fine-tuning run, top to bottom (no Ray in here).

`medbase_ray.train.ray_train` starts one copy of `train_worker` per Ray Train worker,
after Ray has set up `torch.distributed` (gloo on CPU, NCCL on GPU); it hands the loop
this worker's batches and a `report` callable. `deepspeed.initialize` owns the model and
optimizer. Each optimizer step:

    count label tokens of the global batch  (one all-reduce)
    for each of grad_accum_steps micro-batches: forward, backward  (DeepSpeed reduces grads)
    clip, AdamW step, lr schedule step      (inside engine.step at the boundary)
    every log_steps / eval_steps / save_steps: reduce metrics, dev loss, checkpoint, report

Packed rows: `position_ids` restart at 0 for each sample and no `attention_mask` is
passed, so transformers builds a block-diagonal causal mask and samples in one row never
attend to each other; `use_cache=False` (no KV cache in training).

The output head runs only where a label follows (`train.head_on_label_tokens`): a
forward pre-hook on the model's output embeddings keeps the hidden states of those
positions, so the logits are [label tokens, vocab] instead of [rows, seq_len, vocab],
and the loss is the summed cross-entropy over them. Prompt tokens and padding (over half
the positions of Apollo-style QA) never reach the head: less compute in the forward and
backward, and far less memory on a large vocabulary (152k for Qwen2.5: a [4, 2048]
micro-batch's float32 logits alone are 5 GB).
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from medbase_ray.models.loading import load_chat_tokenizer, resolve_dtype, resolve_model_path
from medbase_ray.train.checkpoint import (
    check_resumable,
    checkpoint_dir_name,
    restore_checkpoint,
    write_checkpoint,
)
from medbase_ray.train.config import TrainConfig
from medbase_ray.train.deepspeed_config import build_deepspeed_config
from medbase_ray.train.dev_eval import dev_benchmark_accuracy
from medbase_ray.train.metrics import MetricsWindow, StepStats, peak_memory_mb
from medbase_ray.train.recipe import StepPlan, build_lr_scheduler, param_groups

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
MODEL_COLUMNS = ("input_ids", "labels", "position_ids")

Batch = dict[str, torch.Tensor]
# report(metrics, checkpoint_dir or None): every worker calls it the same number of times.
Report = Callable[[dict[str, Any], str | None], None]


@dataclass(frozen=True)
class WorkerRun:
    """Everything a worker needs besides its data (plain values: it crosses to Ray actors)."""

    train: TrainConfig
    model_name_or_path: str
    chat_format: str  # resolved: "apollo" or "template"
    dtype: str  # model.dtype ("auto": resolved on the worker's device)
    trust_remote_code: bool
    plan: StepPlan
    config_yaml: str  # the resolved pipeline config, stored in every checkpoint


def collate_packed(batch: dict[str, np.ndarray]) -> Batch:
    """Ray Data numpy batch of packed rows -> int64 tensors [micro_batch, seq_len].

    The string columns (source, language) are dropped here rather than with a Ray Data
    projection, which would need a CPU the training workers may be holding.
    """
    out = {k: torch.from_numpy(np.stack(batch[k]).astype(np.int64)) for k in MODEL_COLUMNS}
    out["n_real_tokens"] = torch.as_tensor(np.asarray(batch["n_real_tokens"], dtype=np.int64))
    return out


def all_reduce(values: list[float], op=dist.ReduceOp.SUM) -> list[float]:
    """Sum (or max, ...) a few numbers over workers (float64: token counts stay exact)."""
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(t, op=op)
    return t.tolist()


def count_label_tokens(labels: torch.Tensor) -> int:
    """Tokens that carry loss: labels are shifted by one inside the model's loss."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Next-token argmax hits on the label tokens. logits [B, T, V], labels [B, T]."""
    target = labels[:, 1:]
    hit = (logits[:, :-1].argmax(-1) == target) & (target != IGNORE_INDEX)
    return int(hit.sum())


@contextmanager
def head_at(model: torch.nn.Module, positions: torch.Tensor | None) -> Iterator[None]:
    """During the block, the model's output head sees only the hidden states at
    `positions` ([B, T] bool): its logits come out [N, vocab], row-major. None, or a
    model without output embeddings: unchanged."""
    head = model.get_output_embeddings() if positions is not None else None
    if head is None:
        yield
        return

    def keep(_module, args):
        return (args[0][positions], *args[1:])

    handle = head.register_forward_pre_hook(keep)
    try:
        yield
    finally:
        handle.remove()


def forward_loss(
    engine, batch: Batch, num_items: float, on_label_tokens: bool
) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy over the batch's label tokens / num_items, argmax hits).

    on_label_tokens: the output head only at positions followed by a label (`head_at`);
    otherwise the model's own loss over full logits (transformers' ForCausalLM loss: the
    same sum / num_items)."""
    device = engine.device
    labels = batch["labels"].to(device)
    inputs = {
        "input_ids": batch["input_ids"].to(device),  # [micro, seq_len]
        "position_ids": batch["position_ids"].to(device),
        "use_cache": False,
    }
    if not on_label_tokens:
        out = engine(**inputs, labels=labels, num_items_in_batch=num_items)
        return out.loss, count_correct(out.logits.detach(), labels)
    target = labels[:, 1:]
    followed = target != IGNORE_INDEX
    positions = torch.nn.functional.pad(followed, (0, 1), value=False)  # [B, T]
    with head_at(engine.module, positions):
        logits = engine(**inputs).logits  # [label tokens, vocab]
    targets = target[followed]  # the same positions, in the same row-major order
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        raise RuntimeError(
            f"{type(engine.module).__name__} reshapes its output head's logits "
            f"(got {tuple(logits.shape)}); set train.head_on_label_tokens=false"
        )
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    hits = int((logits.detach().argmax(-1) == targets).sum())
    return loss / num_items, hits


def setup_engine(run: WorkerRun, world_size: int, device: torch.device):
    """Model + DeepSpeed engine (optimizer, schedule, ZeRO) for this worker."""
    # Imported in the workers only: the driver imports this module (WorkerRun) and needs
    # no DeepSpeed, which picks its accelerator as it is imported.
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    train, plan = run.train, run.plan
    on_gpu = device.type == "cuda"
    if not on_gpu:
        # DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce op on first use
        # (a minute of g++, redone whenever the install path changes); gloo's all-reduce
        # is as good at laptop scale. DeepSpeed keeps this table editable for that.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    # DeepSpeed's view of the process group Ray Train set up (its configs read the world
    # size from it, HfDeepSpeedConfig included).
    deepspeed.init_distributed()
    dtype = resolve_dtype(run.dtype, on_gpu, on_gpu and torch.cuda.is_bf16_supported())
    ds_config = build_deepspeed_config(train, world_size, on_gpu, plan.total_steps, dtype)
    # ZeRO-3: from_pretrained partitions each weight as it loads (deepspeed.zero.Init), so
    # no worker holds the whole model; transformers finds this object through a weakref.
    zero3_init = HfDeepSpeedConfig(ds_config) if train.zero_stage == 3 else None
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_path(run.model_name_or_path),
        dtype=getattr(torch, dtype),  # model.dtype's names are torch's
        trust_remote_code=run.trust_remote_code,
    )
    model.config.use_cache = False
    if train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=param_groups(model, train.weight_decay),
        config=ds_config,
        lr_scheduler=lambda opt: build_lr_scheduler(
            opt, train.lr_scheduler, plan.total_steps, plan.warmup_steps
        ),
    )
    del zero3_init
    return engine


def train_step(
    engine, micro_batches: list[Batch], world_size: int, on_label_tokens: bool = True
) -> StepStats:
    """One optimizer step over this worker's `grad_accum_steps` micro-batches."""
    # The loss of a step is the mean over every label token of the global batch, however
    # packing spread them over rows and workers. DeepSpeed averages gradients over
    # workers and scales each backward by 1/accum, so each micro-batch's summed
    # cross-entropy is divided by n_global / (world_size * accum).
    n_local = sum(count_label_tokens(b["labels"]) for b in micro_batches)
    (n_global,) = all_reduce([n_local])
    norm = max(n_global, 1.0) / (world_size * len(micro_batches))
    stats = StepStats(lr=float(engine.get_lr()[0]), label_tokens=n_local)
    for batch in micro_batches:
        loss, hits = forward_loss(engine, batch, norm, on_label_tokens)
        engine.backward(loss)
        engine.step()  # the optimizer only steps at the accumulation boundary
        stats.loss_sum += float(loss.detach()) * norm
        stats.correct_tokens += hits
        stats.real_tokens += int(batch["n_real_tokens"].sum())
    grad_norm = engine.get_global_grad_norm()
    stats.grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
    return stats


@torch.no_grad()
def evaluate(engine, batches: Iterable[Batch], on_label_tokens: bool = True) -> dict[str, float]:
    """Dev loss and token accuracy over this worker's dev shard, summed over workers."""
    engine.eval()
    loss_sum = labels_n = correct = 0.0
    for batch in batches:
        n = count_label_tokens(batch["labels"])
        loss, hits = forward_loss(engine, batch, max(n, 1), on_label_tokens)
        loss_sum += float(loss) * max(n, 1)
        labels_n += n
        correct += hits
    engine.train()
    loss_sum, labels_n, correct = all_reduce([loss_sum, labels_n, correct])
    return {
        "dev_loss": loss_sum / max(labels_n, 1),
        "dev_token_accuracy": correct / max(labels_n, 1),
    }


@torch.no_grad()
def probe_logits(engine, batch: Batch, n_tokens: int) -> dict[str, list]:
    """The trained model's logits on the first n_tokens of one row (collective in ZeRO-3)."""
    engine.eval()
    ids = batch["input_ids"][:1, :n_tokens]
    pos = batch["position_ids"][:1, :n_tokens]
    out = engine(
        input_ids=ids.to(engine.device), position_ids=pos.to(engine.device), use_cache=False
    )
    engine.train()
    return {
        "input_ids": ids.tolist(),
        "position_ids": pos.tolist(),
        "logits": out.logits.float().cpu().tolist(),
    }


def evaluate_dev(engine, tokenizer, run: WorkerRun, dev_batches, rank: int) -> dict[str, float]:
    """The dev figures of this evaluation point (collective: every rank calls it)."""
    on_labels = run.train.head_on_label_tokens
    out = evaluate(engine, dev_batches(), on_labels) if dev_batches is not None else {}
    if run.train.dev_benchmark:
        out.update(dev_benchmark_accuracy(engine, tokenizer, run.config_yaml, rank))
    return out


@contextmanager
def checkpoint_in_tempdir(
    engine, tokenizer, run: WorkerRun, pos: dict[str, int], rank: int
) -> Iterator[str]:
    """This rank's part of the checkpoint at `pos`, in a local directory for the block."""
    meta = {**pos, "plan": run.plan.to_dict()}  # chat format, model: in run.config_yaml
    with tempfile.TemporaryDirectory(prefix="medbase-ckpt-") as tmp:
        ckpt = Path(tmp) / checkpoint_dir_name(pos["step"])
        write_checkpoint(
            engine, ckpt, is_rank0=rank == 0, tokenizer=tokenizer, meta=meta,
            config_yaml=run.config_yaml,
        )  # fmt: skip
        yield str(ckpt)


def groups_of(batches: Iterator[Batch], size: int) -> Iterator[list[Batch]]:
    """Consecutive groups of `size` micro-batches; a short group at the end is dropped."""
    while group := list(itertools.islice(batches, size)):
        if len(group) == size:
            yield group


def train_worker(
    run: WorkerRun,
    train_batches: Callable[[int], Iterable[Batch]],
    dev_batches: Callable[[], Iterable[Batch]] | None,
    report: Report,
    restore_dir: str | None = None,
) -> dict[str, Any]:
    """Train to `run.plan.total_steps`; returns the final state (and probe) on every rank.

    train_batches(epoch) starts a pass over this worker's shard, in an order fixed by the
    epoch (seeded), so a resumed run skips exactly the micro-batches it already trained on.
    """
    hf_logging.disable_progress_bar()  # per-worker load/save bars would garble the driver's
    train, plan = run.train, run.plan
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    if world_size != plan.world_size:
        raise RuntimeError(f"planned for {plan.world_size} workers, running on {world_size}")
    device = (
        torch.device(f"cuda:{torch.cuda.current_device()}")
        if train.use_gpu
        else torch.device("cpu")
    )
    torch.manual_seed(train.seed)
    engine = setup_engine(run, world_size, device)
    # Saved in every checkpoint, with the chat template of the format trained on; a
    # resumed run keeps the tokenizer of the checkpoint it resumes.
    tokenizer = load_chat_tokenizer(
        restore_dir or run.model_name_or_path, run.chat_format, run.trust_remote_code
    )

    # Where we are: optimizer steps done, and micro-batches of the current epoch consumed.
    pos = {"step": 0, "epoch": 0, "micro_batches_in_epoch": 0}
    if restore_dir is not None:
        meta = restore_checkpoint(engine, Path(restore_dir))
        check_resumable(meta["plan"], plan.to_dict(), restore_dir)
        pos = {k: int(meta[k]) for k in pos}
        log.info("rank %d: resumed from %s at step %d", rank, restore_dir, pos["step"])

    window = MetricsWindow()
    last_group: list[Batch] | None = None  # kept for the probe
    final_metrics: dict[str, Any] = {}
    while pos["step"] < plan.total_steps:
        batches = iter(train_batches(pos["epoch"]))
        # Resume mid-epoch: skip the micro-batches this epoch already trained on.
        skipped = sum(1 for _ in itertools.islice(batches, pos["micro_batches_in_epoch"]))
        if skipped != pos["micro_batches_in_epoch"]:
            raise RuntimeError(f"epoch {pos['epoch']} has only {skipped} micro-batches now")
        last_group = None
        for group in groups_of(batches, train.grad_accum_steps):
            stats = train_step(engine, group, world_size, train.head_on_label_tokens)
            last_group = group
            pos["step"] += 1
            pos["micro_batches_in_epoch"] += len(group)
            window.add(stats)
            step, last = pos["step"], pos["step"] == plan.total_steps
            do_eval = (dev_batches is not None or train.dev_benchmark) and (
                last or (train.eval_steps is not None and step % train.eval_steps == 0)
            )
            do_save = last or (train.save_steps is not None and step % train.save_steps == 0)
            if last or do_eval or do_save or step % train.log_steps == 0:
                metrics = {"step": step, "epoch": pos["epoch"], **window.reduce(all_reduce)}
                peak = all_reduce(list(peak_memory_mb()), op=dist.ReduceOp.MAX)
                metrics["peak_rss_mb"], metrics["peak_gpu_mb"] = peak  # the largest worker's
                if do_eval:
                    metrics.update(evaluate_dev(engine, tokenizer, run, dev_batches, rank))
                final_metrics = metrics
                if do_save:
                    with checkpoint_in_tempdir(engine, tokenizer, run, pos, rank) as ckpt:
                        report(metrics, ckpt)  # Ray Train copies it to storage
                else:
                    report(metrics, None)
            if last:
                break
        else:
            if last_group is None and skipped == 0:
                raise RuntimeError(f"epoch {pos['epoch']} gave this worker no full step")
            pos["epoch"] += 1
            pos["micro_batches_in_epoch"] = 0

    result: dict[str, Any] = {"rank": rank, "pid": os.getpid(), **pos, "metrics": final_metrics}
    if train.probe_tokens and last_group is not None:
        result["probe"] = probe_logits(engine, last_group[0], train.probe_tokens)
    return result
