"""The Ray layer of training: a TorchTrainer over `loop.train_worker`.

Ray Train starts the workers, sets up torch.distributed, hands each worker a disjoint
streaming shard of the packed rows (`get_dataset_shard`), persists the checkpoints the
workers report (merged into one directory, the last `keep_last` kept), and restarts the
worker group from the latest checkpoint when a worker dies (`FailureConfig`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
from ray.data import Dataset, ExecutionOptions
from ray.data.collate_fn import NumpyBatchCollateFn
from ray.experimental import tqdm_ray
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    DataConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
    UserCallback,
)
from ray.train.torch import TorchTrainer

from medbase_ray.train.loop import WorkerRun, collate_packed, train_worker
from medbase_ray.train.metrics import MetricsLog


class PackedRowsCollate(NumpyBatchCollateFn):
    """Ray Data's hook for `iter_torch_batches`: packed rows -> the model's tensors."""

    def __call__(self, batch: dict[str, np.ndarray]):
        return collate_packed(batch)


def train_func(config: dict[str, Any]) -> dict[str, Any]:
    """Runs in each Ray Train worker: wire this worker's shards to the plain loop."""
    # One INFO line per report and worker would repeat what metrics.csv and the bar show.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    run: WorkerRun = config["run"]
    micro = run.train.micro_batch_size
    train_shard = ray.train.get_dataset_shard("train")
    dev_shard = ray.train.get_dataset_shard("dev") if config["has_dev"] else None

    def train_batches(epoch: int):
        # Each epoch in its own order, the same for a given (seed, epoch): a resumed run
        # sees the order it stopped in. 0 rows of buffer: the mixture's order every epoch.
        buffer = run.train.shuffle_buffer_rows
        return train_shard.iter_torch_batches(
            batch_size=micro,
            drop_last=True,
            collate_fn=PackedRowsCollate(),
            local_shuffle_buffer_size=buffer or None,
            local_shuffle_seed=run.train.seed * 100_003 + epoch if buffer else None,
        )

    def dev_batches():
        return dev_shard.iter_torch_batches(batch_size=micro, collate_fn=PackedRowsCollate())

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        if checkpoint_dir is None:
            ray.train.report(metrics)
            return
        ray.train.report(
            metrics,
            checkpoint=Checkpoint.from_directory(checkpoint_dir),
            checkpoint_dir_name=Path(checkpoint_dir).name,
        )

    checkpoint = ray.train.get_checkpoint()  # latest one: after a restart, or on --resume
    dev = dev_batches if dev_shard is not None else None
    if checkpoint is None:
        return train_worker(run, train_batches, dev, report)
    with checkpoint.as_directory() as restore_dir:
        return train_worker(run, train_batches, dev, report, restore_dir=restore_dir)


class ProgressCallback(UserCallback):
    """On the Ray Train controller (on the driver's node): the progress bar shown by the
    driver, and the run directory's metrics.csv / TensorBoard log."""

    def __init__(self, log_dir: str, total_steps: int):
        self.log_dir, self.total_steps = log_dir, total_steps
        self._log: MetricsLog | None = None
        self._bar = None
        self._shown = 0
        self._started_s = time.time()

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        row = dict(metrics[0])  # metrics are reduced over workers: rank 0's say it all
        row["elapsed_s"] = round(time.time() - self._started_s, 3)
        if self._log is None:
            self._log = MetricsLog(self.log_dir)
            self._bar = tqdm_ray.tqdm(total=self.total_steps, desc="train", unit="step")
        self._log.write(row)
        step = int(row["step"])
        self._bar.set_description(f"train loss {row['loss']:.4f}")
        if step > self._shown:  # a restarted run reports some steps again
            self._bar.update(step - self._shown)
            self._shown = step
        if step >= self.total_steps:
            self._bar.close()
            self._log.close()


def build_trainer(
    run: WorkerRun,
    datasets: dict[str, Dataset],
    storage_dir: str,
    log_dir: str,
    worker_env: dict[str, str],
    callbacks: list[UserCallback] | None = None,
) -> TorchTrainer:
    """The TorchTrainer of one run; `storage_dir` is the run's directory (local or URI).
    `callbacks` join the progress callback (a Tune trial passes TuneReportCallback)."""
    train = run.train
    parent, _, name = storage_dir.rstrip("/").rpartition("/")
    for dataset in datasets.values():
        # The driver shows one bar (steps, loss); ingest bars of every epoch would bury it.
        dataset.context.enable_progress_bars = False
    return TorchTrainer(
        train_func,
        train_loop_config={"run": run, "has_dev": "dev" in datasets},
        scaling_config=ScalingConfig(
            num_workers=train.num_workers,
            use_gpu=train.use_gpu,
            resources_per_worker=dict(train.resources_per_worker),
        ),
        run_config=RunConfig(
            name=name,
            storage_path=parent,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=train.keep_last),
            callbacks=[ProgressCallback(log_dir, run.plan.total_steps), *(callbacks or [])],
            worker_runtime_env={"env_vars": worker_env},
            # Per-report INFO lines would repeat what metrics.csv and the bar show.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
        datasets=datasets,
        # preserve_order makes the split deterministic (rows go to workers in the same
        # order every pass), which exact resume and the step plan rely on.
        dataset_config=DataConfig(
            execution_options=ExecutionOptions(preserve_order=True),
            enable_shard_locality=False,
        ),
    )
