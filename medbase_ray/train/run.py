"""`run_train`: the train stage from Python (what `medbase train` and jobs/train.py call).

    from medbase_ray.config import load_config
    from medbase_ray.train.run import run_train
    out = run_train(load_config(preset="tiny"), resume=False)
    out["checkpoint"]   # a Hugging Face model directory: from_pretrained / medbase serve

The run directory (`train.storage_path`, default `<run>/train`) holds the checkpoints
(`checkpoint_step_NNNNNN/`, the last `keep_last`), `metrics.csv`, `tensorboard/`, the
resolved `config.yaml`, and `_SUCCESS` (JSON naming the final checkpoint) once complete.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medbase_ray.train.metrics import read_metrics

if TYPE_CHECKING:  # medbase_ray.config imports this package's config: no cycle at runtime
    from medbase_ray.config import PipelineConfig

log = logging.getLogger(__name__)

SUCCESS_FILE = "_SUCCESS"


class TrainRunError(RuntimeError):
    """A run that cannot continue; the message names its last good checkpoint."""


def is_remote(path: str) -> bool:
    return "://" in path


def run_dir_of(cfg: PipelineConfig) -> str:
    path = cfg.train.storage_path or cfg.run.stage_dir("train")
    return path.rstrip("/") if is_remote(path) else os.path.abspath(path)


def latest_checkpoint(run_dir: str) -> str | None:
    """The newest checkpoint Ray Train registered in `run_dir` (None if none)."""
    from ray.train import Result

    try:
        result = Result.from_path(run_dir)
    except RuntimeError:  # no run there yet, or none of its checkpoints was committed
        return None
    return result.checkpoint.path if result.checkpoint is not None else None


def _read_success(run_dir: str) -> dict[str, Any] | None:
    from medbase_ray import storage  # pyarrow filesystems: local dirs and URIs

    marker = storage.join(run_dir, SUCCESS_FILE)
    return json.loads(storage.read_bytes(marker)) if storage.exists(marker) else None


def _read_history(run_dir: str) -> list[dict[str, float]]:
    from medbase_ray import storage

    if not is_remote(run_dir):
        return read_metrics(os.path.join(run_dir, "metrics.csv"))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, "metrics.csv")
        uri = storage.join(run_dir, "metrics.csv")
        local.write_bytes(storage.read_bytes(uri) if storage.exists(uri) else b"")
        return read_metrics(local)


def _upload_logs(log_dir: str, run_dir: str) -> None:
    """metrics.csv and tensorboard/, written locally on the driver's node, to storage."""
    import pyarrow.fs as pafs

    from medbase_ray import storage

    fs, path = storage.resolve(run_dir)
    pafs.copy_files(log_dir, path, pafs.LocalFileSystem(), fs)


def export_final(run_dir: str, checkpoint) -> str:
    """`<run_dir>/final`: the last checkpoint's model directory (a ray.train.Checkpoint)
    without its training state: what serve and eval load, under a stable name."""
    import pyarrow.fs as pafs

    from medbase_ray import storage
    from medbase_ray.train.checkpoint import TRAINING_STATE_DIR

    fs, src = checkpoint.filesystem, checkpoint.path
    _, dst = storage.resolve(storage.join(run_dir, "final"))
    if fs.get_file_info(dst).type != pafs.FileType.NotFound:
        fs.delete_dir(dst)
    fs.create_dir(dst, recursive=True)
    for info in fs.get_file_info(pafs.FileSelector(src)):
        if info.base_name != TRAINING_STATE_DIR:
            pafs.copy_files(info.path, f"{dst}/{info.base_name}", fs, fs)
    return f"{run_dir}/final" if is_remote(run_dir) else dst


def _local_checkpoint(path: str) -> str:
    """A local directory of a checkpoint (downloaded when the storage is a cloud URI)."""
    if not is_remote(path):
        return path
    from ray.train import Checkpoint

    return Checkpoint(path).to_directory(tempfile.mkdtemp(prefix="medbase-final-"))


def _spare_cpus(num_workers: int, resources_per_worker: dict[str, float]) -> float:
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    return total - num_workers * resources_per_worker.get("CPU", 0.0)


def run_train(
    cfg: PipelineConfig,
    dataset=None,
    dev_dataset=None,
    resume: bool = False,
    data_dir: str | None = None,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Fine-tune `cfg.model` on packed rows; returns the final checkpoint and metrics.

    dataset / dev_dataset: Ray Datasets of packed rows; None: the mixture of `data_dir`
    (default `<run>/prepared`), refused unless prepared for this tokenizer and chat format.
    resume: continue the run in the run directory from its latest checkpoint, at the
    exact step and data position. Without it, a run directory holding checkpoints of an
    unfinished run is an error, and a finished one is returned as it is.

    callbacks: more Ray Train UserCallbacks (a Tune trial streams the reports to Tune
    with TuneReportCallback).

    Returns {"checkpoint": local HF model dir, "metrics": [per reported step], "final":
    last metrics, "steps": optimizer steps, "plan": step plan, "run_dir", "probe"?}.
    """
    from ray.train import TrainingFailedError

    from medbase_ray import storage
    from medbase_ray.config import dump_config
    from medbase_ray.models.checkpoint_info import resolve_model_settings
    from medbase_ray.models.loading import load_tokenizer
    from medbase_ray.ray_runtime import init_ray, worker_env
    from medbase_ray.train.data import check_columns, check_prepared, load_prepared
    from medbase_ray.train.loop import WorkerRun
    from medbase_ray.train.ray_train import build_trainer
    from medbase_ray.train.recipe import plan_steps

    train = cfg.train
    run_dir = run_dir_of(cfg)
    done = _read_success(run_dir)
    if done is not None:
        log.info(
            "train: %s is complete (final checkpoint %s); skipping", run_dir, done["checkpoint"]
        )
        local = _local_checkpoint(done["checkpoint"])
        return done | {"checkpoint": local, "metrics": _read_history(run_dir), "skipped": True}
    existing = latest_checkpoint(run_dir)
    if existing and not resume:
        raise TrainRunError(
            f"{run_dir} holds checkpoints of an unfinished run (latest {existing}): pass "
            "--resume to continue it, or choose another run.name or train.storage_path"
        )

    if dataset is None:  # refuse rows made for another tokenizer before anything starts
        tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
        data_dir = data_dir or cfg.run.stage_dir("prepared")
        check_prepared(cfg, data_dir, tokenizer)
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    mixture: dict[str, Any] | None = None
    if dataset is None:
        dataset, mixture_report = load_prepared(cfg, data_dir, tokenizer)
        log.info("train: mixture of %s: %s", data_dir, mixture_report)
        mixture = {
            "tokens": mixture_report["total_tokens"],
            "rows": mixture_report["rows"],
            "language_shares": {k: v["share"] for k, v in mixture_report["languages"].items()},
        }
    else:
        check_columns(dataset.schema().names, "the training dataset")
    datasets = {"train": dataset} | ({"dev": dev_dataset} if dev_dataset is not None else {})
    if _spare_cpus(train.num_workers, train.resources_per_worker) < 1:
        # Streaming ingest runs Ray Data tasks beside the workers; with no CPU left for
        # them (a laptop giving every core to a worker) they would wait forever.
        log.warning("train: no CPU left beside the workers for streaming ingest: materializing")
        datasets = {k: ds.materialize() for k, ds in datasets.items()}
    plan = plan_steps(datasets["train"].count(), train.num_workers, train)
    log.info(
        "train: %d steps (%d per epoch), %d workers, ZeRO-%d, run dir %s",
        plan.total_steps, plan.steps_per_epoch, train.num_workers, train.zero_stage, run_dir,
    )  # fmt: skip

    run = WorkerRun(
        train=train,
        model_name_or_path=cfg.model.name_or_path,
        chat_format=resolve_model_settings(cfg.model).chat_format,
        trust_remote_code=cfg.model.trust_remote_code,
        plan=plan,
        config_yaml=dump_config(cfg),
    )
    # metrics.csv / TensorBoard are written on the driver's node, in the run directory
    # when it is local (uploaded beside the checkpoints at the end otherwise).
    log_dir = tempfile.mkdtemp(prefix="medbase-train-log-") if is_remote(run_dir) else run_dir
    earlier_csv = storage.join(run_dir, "metrics.csv")
    if is_remote(run_dir) and storage.exists(earlier_csv):  # a resumed run keeps its history
        Path(log_dir, "metrics.csv").write_bytes(storage.read_bytes(earlier_csv))
    env = worker_env(cfg.ray.env_vars) | ({} if train.use_gpu else {"DS_ACCELERATOR": "cpu"})
    trainer = build_trainer(run, datasets, run_dir, log_dir, env, callbacks)
    storage.write_bytes(storage.join(run_dir, "config.yaml"), dump_config(cfg).encode())
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        last = latest_checkpoint(run_dir)
        kept = (
            f"its last good checkpoint is {last}; `medbase train --resume` continues from it"
            if last
            else "it saved no checkpoint"
        )
        raise TrainRunError(
            f"training in {run_dir} failed and cannot continue ({train.max_failures} restarts "
            f"allowed); {kept}.\n{exc}"
        ) from exc

    history = read_metrics(os.path.join(log_dir, "metrics.csv"))
    returned = result.return_value or {}
    if is_remote(run_dir):
        _upload_logs(log_dir, run_dir)
    final = export_final(run_dir, result.checkpoint)
    summary = {
        "checkpoint": final,
        "last_checkpoint": result.checkpoint.path,
        "run_dir": run_dir,
        "steps": plan.total_steps,
        "plan": plan.to_dict(),
        "mixture": mixture,  # realised token shares (None: a dataset was given)
        # metrics.csv holds the fixed columns; the last report has them all (e.g. the
        # dev accuracy of each language).
        "final": (history[-1] if history else {}) | (returned.get("metrics") or {}),
    }
    storage.write_bytes(storage.join(run_dir, SUCCESS_FILE), json.dumps(summary, indent=2).encode())
    out = summary | {"checkpoint": _local_checkpoint(final), "metrics": history}
    if "probe" in returned:
        out["probe"] = returned["probe"]
    return out
