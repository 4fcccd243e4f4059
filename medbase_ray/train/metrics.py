"""Training metrics: per-step sums on each worker, reduced over workers at log time,
and the run directory's log (CSV + TensorBoard) written from the reported rows."""

from __future__ import annotations

import csv
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Columns of metrics.csv, in order; a row may leave some empty (dev_* between evals).
CSV_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "token_accuracy",
    "lr",
    "grad_norm",
    "real_tokens_per_s",
    "real_tokens",
    "dev_loss",
    "dev_token_accuracy",
    "dev_accuracy",
    "peak_rss_mb",
    "peak_gpu_mb",
    "elapsed_s",
)


def peak_memory_mb() -> tuple[float, float]:
    """(peak resident memory of this process, peak GPU memory allocated by torch), MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes vs KiB
    gpu_mb = 0.0
    # torch (and tensorboard, below) only where metrics are made: this module also reads
    # metrics.csv back for a finished run (run_train's skip, the report) without them.
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu_mb = torch.cuda.max_memory_allocated() / 2**20
    return rss_mb, gpu_mb


@dataclass
class StepStats:
    """Sums over this worker's micro-batches of one optimizer step."""

    loss_sum: float = 0.0  # summed token cross-entropy
    label_tokens: int = 0
    correct_tokens: int = 0
    real_tokens: int = 0
    lr: float = 0.0
    grad_norm: float = 0.0


@dataclass
class MetricsWindow:
    """The steps since the last report, on one worker."""

    steps: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    lr: float = 0.0
    grad_norm: float = 0.0
    started_s: float = field(default_factory=time.perf_counter)

    def add(self, s: StepStats) -> None:
        self.steps += 1
        for i, v in enumerate((s.loss_sum, s.label_tokens, s.correct_tokens, s.real_tokens)):
            self.sums[i] += v
        self.lr, self.grad_norm = s.lr, s.grad_norm

    def reduce(self, all_reduce_sum: Callable[[list[float]], list[float]]) -> dict[str, float]:
        """Global metrics of the window (a collective: every worker calls it), then reset."""
        loss_sum, labels, correct, real = all_reduce_sum(self.sums)
        elapsed = time.perf_counter() - self.started_s
        out = {
            "loss": loss_sum / max(labels, 1),
            "token_accuracy": correct / max(labels, 1),
            "lr": self.lr,
            "grad_norm": self.grad_norm,
            "real_tokens": int(real),
            "real_tokens_per_s": real / elapsed if elapsed > 0 else 0.0,
        }
        self.steps, self.sums, self.started_s = 0, [0.0, 0.0, 0.0, 0.0], time.perf_counter()
        return out


class MetricsLog:
    """metrics.csv and TensorBoard events in a local run directory (append-only).

    After a restart the steps since the last checkpoint are reported again; readers keep
    the last row of each step (`read_metrics` does).
    """

    def __init__(self, log_dir: str | Path):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / "metrics.csv"
        self._writer = None

    def write(self, row: dict[str, Any]) -> None:
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in CSV_COLUMNS})
        self._tensorboard(row)

    def _tensorboard(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # heavy: see peak_memory_mb

            self._writer = SummaryWriter(str(self.dir / "tensorboard"))
        for key in CSV_COLUMNS[2:]:
            value = row.get(key)
            if isinstance(value, int | float) and key != "elapsed_s":
                tag = f"dev/{key[4:]}" if key.startswith("dev_") else f"train/{key}"
                self._writer.add_scalar(tag, value, global_step=int(row["step"]))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(csv_path: str | Path) -> list[dict[str, float]]:
    """The metrics history, one row per step (the last report of a step wins)."""
    path = Path(csv_path)
    if not path.exists():
        return []
    rows: dict[int, dict[str, float]] = {}
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row = {k: float(v) for k, v in raw.items() if v not in ("", None)}
            rows[int(row["step"])] = row | {"step": int(row["step"])}
    return [rows[s] for s in sorted(rows)]
