"""The trainers a user would pick instead of `medbase train`, for benchmarks/train.py.

- Hugging Face `Trainer` with DeepSpeed ZeRO-1 (what LLaMA-Factory and Axolotl run
  underneath), 2 processes started by `torchrun` on the CPUs (gloo), transformers' own
  non-padding token counter (`include_num_input_tokens_seen="non_padding"`);
- Ray Train's `TorchTrainer` without DeepSpeed: plain DDP (`ray.train.torch.prepare_model`),
  2 workers x 1 CPU.
Both get the rows benchmarks/train.py gives medbase (packed by the prepare stage), 2 rows
a process per step (4 a step), torch's AdamW, gradient clipping at 1.0, float32, and
report real (non-pad) tokens/s after the first `warmup` steps and the largest peak
resident memory of their processes.

The Trainer runs in processes of its own; this file is their entry point:

    torchrun --nproc_per_node 2 benchmarks/peers/train_peers.py ROWS.parquet OUT_DIR STEPS WARMUP MODEL_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from medbase_ray.net import free_port
from medbase_ray.train.metrics import peak_memory_mb

MICRO_BATCH = 2  # rows per process per step; 2 processes
LR, WEIGHT_DECAY, CLIP = 7e-4, 0.1, 1.0  # the tiny preset's
# ZeRO-1 as LLaMA-Factory's examples/deepspeed configs write it: "auto" lets the Trainer
# fill in batch sizes, clipping and dtype; the Trainer's own AdamW is handed to DeepSpeed.
DEEPSPEED_ZERO1 = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_allow_untested_optimizer": True,
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 1, "contiguous_gradients": True, "overlap_comm": False},
}


def versions() -> dict[str, str]:
    import accelerate
    import deepspeed
    import ray
    import transformers

    return {
        "transformers": transformers.__version__,
        "deepspeed": deepspeed.__version__,
        "accelerate": accelerate.__version__,
        "ray": ray.__version__,
        "torch": torch.__version__,
    }


def model_inputs(batch: pa.Table) -> dict[str, torch.Tensor]:
    return {
        c: torch.tensor(batch.column(c).to_pylist())
        for c in ("input_ids", "labels", "position_ids")
    }


# -- Hugging Face Trainer + DeepSpeed, under torchrun ---------------------------------


def run_hf_trainer(model_dir: str, rows: pa.Table, steps: int, warmup: int, workdir: Path) -> dict:
    """2 processes of `Trainer` + ZeRO-1 via torchrun; {"tokens_per_s", "peak_rss_mb"}."""
    workdir.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows.select(["input_ids", "labels", "position_ids"]), workdir / "rows.parquet")
    env = os.environ | {"DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        __file__, str(workdir / "rows.parquet"), str(workdir), str(steps), str(warmup), model_dir,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:  # the worker's exception line, not torchrun's summary
        errors = [
            ln for ln in proc.stderr.splitlines() if "Error" in ln and "ChildFailed" not in ln
        ]
        raise RuntimeError(f"torchrun exited {proc.returncode}: {(errors or ['?'])[0].strip()}")
    ranks = [json.loads((workdir / f"rank{r}.json").read_text()) for r in range(2)]
    return {
        "tokens_per_s": ranks[0]["tokens_per_s"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
    }


def hf_trainer_worker(
    rows_path: str, out_dir: str, steps: int, warmup: int, model_dir: str
) -> None:
    """One torchrun process: the Trainer as a user configures it, timed by a callback."""
    from accelerate import PartialState
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    # The Trainer's DeepSpeed path sets accelerate up for an accelerator device: on a
    # CPU-only machine it ends with no backend and a world of 1 process (DeepSpeed then
    # finds 2 and refuses the batch sizes). Configure accelerate's state for DeepSpeed
    # over gloo first and let the Trainer use it (`use_configured_state`).
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    PartialState(backend="gloo")
    table = pq.read_table(rows_path)

    class PackedRows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return table.num_rows

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {k: v[0] for k, v in model_inputs(table.slice(i, 1)).items()}

    class Clock(TrainerCallback):
        """Tokens seen (the Trainer's own non-padding count, all ranks) and time, from
        the end of step `warmup` to the end of the run."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                self.start = (time.perf_counter(), state.num_input_tokens_seen)
            if state.global_step == steps:
                t0, n0 = self.start
                self.rate = (state.num_input_tokens_seen - n0) / (time.perf_counter() - t0)

    args = TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=MICRO_BATCH,
        max_steps=steps,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=CLIP,
        optim="adamw_torch",
        deepspeed=DEEPSPEED_ZERO1,
        ddp_backend="gloo",
        accelerator_config={"use_configured_state": True},
        include_num_input_tokens_seen="non_padding",
        save_strategy="no",
        logging_steps=steps,
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)  # its pad id: what is not counted
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    clock = Clock()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=PackedRows(),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    rank = int(os.environ["RANK"])
    result = {"tokens_per_s": clock.rate, "peak_rss_mb": peak_memory_mb()[0]}
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))


# -- Ray TorchTrainer, plain DDP ------------------------------------------------------


def ray_ddp_loop(config: dict) -> None:
    """One Ray Train worker: the model wrapped in DDP by Ray, this rank's rows of each step."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    rows: pa.Table = config["rows"]
    model = AutoModelForCausalLM.from_pretrained(config["model_dir"], dtype=torch.float32)
    model = ray.train.torch.prepare_model(model)  # DistributedDataParallel over gloo
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    tokens, started = 0, 0.0
    for k in range(config["steps"]):
        if k == config["warmup"]:
            dist.barrier()
            tokens, started = 0, time.perf_counter()
        step_rows = rows.slice(k * MICRO_BATCH * world, MICRO_BATCH * world)
        batch = step_rows.slice(rank * MICRO_BATCH, MICRO_BATCH)
        loss = model(**model_inputs(batch), use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(step_rows.column("n_real_tokens").to_pylist())  # the global batch's
    dist.barrier()
    rate = tokens / (time.perf_counter() - started)
    rss = torch.tensor([peak_memory_mb()[0]])
    dist.all_reduce(rss, op=dist.ReduceOp.MAX)
    if rank == 0:  # Ray Train 2's Result carries no metrics without a checkpoint
        result = {"tokens_per_s": rate, "peak_rss_mb": float(rss.item())}
        Path(config["out"]).write_text(json.dumps(result))


def run_ray_ddp(model_dir: str, rows: pa.Table, steps: int, warmup: int, workdir: Path) -> dict:
    """Ray Train's TorchTrainer, 2 workers x 1 CPU, no DeepSpeed (same machine: the
    workers write their figures to `workdir`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    import ray.cloudpickle
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    # The workers cannot import this script's module: send the loop by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    trainer = TorchTrainer(
        ray_ddp_loop,
        train_loop_config={
            "rows": rows,
            "model_dir": model_dir,
            "steps": steps,
            "warmup": warmup,
            "out": str(workdir / "ray-ddp.json"),
        },
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=str(workdir), name="ray-ddp"),
    )
    trainer.fit()
    return json.loads((workdir / "ray-ddp.json").read_text())


if __name__ == "__main__":
    rows_path, out_dir, n_steps, n_warmup, model = sys.argv[1:6]
    hf_trainer_worker(rows_path, out_dir, int(n_steps), int(n_warmup), model)
