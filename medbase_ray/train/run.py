"""`run_train`: the train stage from Python (what `medbase train` and jobs/train.py call).

    from medbase_ray.config import load_config
    from medbase_ray.train.run import run_train
    out = run_train(load_config(preset="tiny"), resume=False)
    out["checkpoint"]   # a Hugging Face model directory: from_pretrained / medbase serve

The run directory (`train.storage_path`, default `<run>/train`; a path or a URI) is a
stage output (medbase_ray.stage.StageOutput: the resolved `config.yaml`, `summary.json`,
and `_SUCCESS` naming the final checkpoint, written last). Ray Train owns the
checkpoints in it (`checkpoint_step_NNNNNN/`, the last `keep_last`; `Result.from_path`
finds the latest); beside them `final/` (the last one's model without its training
state), `metrics.csv` and `tensorboard/`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs as pafs
import ray
from ray.train import Checkpoint, Result, TrainingFailedError

from medbase_ray import storage
from medbase_ray.config import PipelineConfig, dump_config
from medbase_ray.models.checkpoint_info import (
    SettingsConflict,
    read_checkpoint_config,
    resolve_model_settings,
)
from medbase_ray.models.loading import load_tokenizer
from medbase_ray.ray_runtime import init_ray, worker_env
from medbase_ray.stage import StageOutput
from medbase_ray.train.checkpoint import (
    TRAIN_META_FILE,
    TRAINING_STATE_DIR,
    check_resumable,
    read_train_meta,
)
from medbase_ray.train.config import TrainConfig
from medbase_ray.train.data import check_columns, check_prepared, load_prepared
from medbase_ray.train.loop import WorkerRun
from medbase_ray.train.metrics import read_metrics
from medbase_ray.train.ray_train import build_trainer
from medbase_ray.train.recipe import StepPlan, plan_steps

log = logging.getLogger(__name__)

FINAL_DIR = "final"
METRICS_FILE = "metrics.csv"
# Files of a checkpoint that are not its tokenizer or config (not fetched to read those).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class TrainRunError(RuntimeError):
    """A run that cannot continue; the message names its last good checkpoint."""


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
    exact step and data position, with that checkpoint's chat format, dtype, seq_len and
    tokenizer (a config that sets another is refused). Without it, a run directory
    holding checkpoints of an unfinished run is an error, and a finished one is
    returned as it is.
    callbacks: more Ray Train UserCallbacks (a Tune trial streams the reports to Tune
    with TuneReportCallback).

    Returns {"checkpoint": local HF model dir, "metrics": [per reported step], "final":
    last metrics, "steps": optimizer steps, "plan": step plan, "run_dir", "mixture",
    "probe"?}.
    """
    out = StageOutput.of(cfg.run, "train", cfg.train.storage_path)
    if out.is_complete():
        return completed_run(out)
    resume_from = checkpoint_to_resume(out, resume)
    cfg = resolve_run_config(cfg, resume_from)
    tokenizer = load_tokenizer(tokenizer_dir(cfg, resume_from), cfg.model.trust_remote_code)
    data_dir = data_dir or cfg.run.stage_dir("prepared")
    if dataset is None:  # refuse rows made for another tokenizer before anything starts
        check_prepared(cfg, data_dir, tokenizer)
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    datasets, mixture = training_datasets(cfg, dataset, dev_dataset, data_dir, tokenizer)
    plan = plan_steps(datasets["train"].count(), cfg.train.num_workers, cfg.train)
    if resume_from is not None:  # before any worker starts: the same data and batches
        check_resumable(read_train_meta(resume_from)["plan"], plan.to_dict(), resume_from)
    log.info(
        "train: %d steps (%d per epoch), %d workers, ZeRO-%d, run dir %s%s",
        plan.total_steps, plan.steps_per_epoch, cfg.train.num_workers, cfg.train.zero_stage,
        out, f", resuming {resume_from}" if resume_from else "",
    )  # fmt: skip

    run = worker_run(cfg, plan)
    env = worker_env(cfg.ray.env_vars) | ({} if cfg.train.use_gpu else {"DS_ACCELERATOR": "cpu"})
    out.begin(run.config_yaml)
    with metrics_log_dir(out) as log_dir:
        trainer = build_trainer(run, datasets, out.uri, log_dir, env, callbacks)
        result = fit(trainer, out, cfg.train)
        history = read_metrics(Path(log_dir, METRICS_FILE))
    returned = result.return_value or {}
    summary = {
        "checkpoint": export_final(out, result.checkpoint),
        "last_checkpoint": out.child(PurePosixPath(result.checkpoint.path).name),
        "run_dir": out.uri,
        "steps": plan.total_steps,
        "plan": plan.to_dict(),
        "mixture": mixture,  # realised token shares (None: a dataset was given)
        # metrics.csv holds the fixed columns; the last report has them all (e.g. the
        # dev accuracy of each language).
        "final": (history[-1] if history else {}) | (returned.get("metrics") or {}),
    }
    out.complete(summary)
    local = local_model_dir(summary["checkpoint"])
    probe = {"probe": returned["probe"]} if "probe" in returned else {}
    return summary | {"checkpoint": local, "metrics": history} | probe


def worker_run(cfg: PipelineConfig, plan: StepPlan) -> WorkerRun:
    """What each worker is handed, from the resolved config (see resolve_run_config)."""
    return WorkerRun(
        train=cfg.train,
        model_name_or_path=cfg.model.name_or_path,
        chat_format=cfg.model.chat_format,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        plan=plan,
        config_yaml=dump_config(cfg),
    )


def completed_run(out: StageOutput) -> dict[str, Any]:
    """What run_train returned when it finished the run at `out` (a re-run skips)."""
    done = out.summary() or {}
    log.info("train: %s is complete (final checkpoint %s); skipping", out, done["checkpoint"])
    local = local_model_dir(done["checkpoint"])
    return done | {"checkpoint": local, "metrics": read_history(out), "skipped": True}


def latest_checkpoint(out: StageOutput) -> str | None:
    """The newest checkpoint Ray Train registered at `out`, as a path or URI under it."""
    try:
        result = Result.from_path(out.uri)
    except RuntimeError:  # no run there yet, or none of its checkpoints was committed
        return None
    if result.checkpoint is None:
        return None
    return out.child(PurePosixPath(result.checkpoint.path).name)


def checkpoint_to_resume(out: StageOutput, resume: bool) -> str | None:
    """The checkpoint `--resume` continues from (None: a fresh run). A fresh run where an
    unfinished one left checkpoints would overwrite them: refused."""
    existing = latest_checkpoint(out)
    if existing and not resume:
        raise TrainRunError(
            f"{out} holds checkpoints of an unfinished run (latest {existing}): pass "
            "--resume to continue it, or choose another run.name or train.storage_path"
        )
    return existing if resume else None


def resolve_run_config(cfg: PipelineConfig, resume_from: str | None) -> PipelineConfig:
    """`cfg` with the model settings this run trains with, written into its config.yaml
    and every checkpoint: the chat format resolved (the model's own, else Apollo's); on
    --resume, the chat format, dtype and seq_len of the checkpoint resumed wherever
    `cfg` leaves them unset. A setting that differs from the checkpoint's, or another
    model, raises SettingsConflict naming both values."""
    seq_len = None
    if resume_from is not None:
        trained_from = (read_checkpoint_config(resume_from) or {}).get("model") or {}
        name = trained_from.get("name_or_path")
        if name is not None and name != cfg.model.name_or_path:
            raise SettingsConflict(
                f"model.name_or_path is {cfg.model.name_or_path!r} but {resume_from} was "
                f"trained from {name!r}: resume with the model it was trained from"
            )
        # A seq_len the config sets (a preset does) must match; unset, the checkpoint's.
        seq_len = cfg.prepare.seq_len if "seq_len" in cfg.prepare.model_fields_set else None
    settings = resolve_model_settings(cfg.model, resume_from, seq_len)
    model = cfg.model.model_copy(
        update={"chat_format": settings.chat_format, "dtype": settings.dtype}
    )
    prepare = cfg.prepare
    if resume_from is not None and settings.seq_len is not None:
        prepare = prepare.model_copy(update={"seq_len": settings.seq_len})
    return cfg.model_copy(update={"model": model, "prepare": prepare})


def tokenizer_dir(cfg: PipelineConfig, resume_from: str | None) -> str:
    """Where this run's tokenizer loads from on the driver: the resumed checkpoint's own
    (its small files fetched when it is remote), else the model's."""
    if resume_from is None:
        return cfg.model.name_or_path
    local = StageOutput(resume_from).local_path()
    if local is not None:
        return str(local)
    fetched = tempfile.mkdtemp(prefix="medbase-resume-tokenizer-")
    for uri in storage.list_files(resume_from):
        if not uri.endswith(_WEIGHT_SUFFIXES):
            Path(fetched, PurePosixPath(uri).name).write_bytes(storage.read_bytes(uri))
    return fetched


def training_datasets(
    cfg: PipelineConfig, dataset, dev_dataset, data_dir: str, tokenizer
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """({"train": ..., "dev"?: ...} Ray Datasets, the realised mixture or None)."""
    mixture = None
    if dataset is None:
        dataset, report = load_prepared(cfg, data_dir, tokenizer)
        log.info("train: mixture of %s: %s", data_dir, report)
        mixture = {
            "tokens": report["total_tokens"],
            "rows": report["rows"],
            "language_shares": {k: v["share"] for k, v in report["languages"].items()},
        }
    else:
        check_columns(dataset.schema().names, "the training dataset")
    datasets = {"train": dataset} | ({"dev": dev_dataset} if dev_dataset is not None else {})
    train = cfg.train
    spare = ray.cluster_resources().get("CPU", 0.0) - train.num_workers * (
        train.resources_per_worker.get("CPU", 0.0)
    )
    if spare < 1:
        # Streaming ingest runs Ray Data tasks beside the workers; with no CPU left for
        # them (a laptop giving every core to a worker) they would wait forever.
        log.warning("train: no CPU left beside the workers for streaming ingest: materializing")
        datasets = {k: ds.materialize() for k, ds in datasets.items()}
    return datasets, mixture


@contextmanager
def metrics_log_dir(out: StageOutput) -> Iterator[str]:
    """Where the driver writes metrics.csv and tensorboard/: the run directory when it is
    local; else a local directory holding the run's earlier metrics.csv (a resumed run
    keeps its history), uploaded beside the checkpoints when the block exits."""
    local = out.local_path()
    if local is not None:
        yield str(local)
        return
    with tempfile.TemporaryDirectory(prefix="medbase-train-log-") as tmp:
        if out.exists(METRICS_FILE):
            Path(tmp, METRICS_FILE).write_bytes(storage.read_bytes(out.child(METRICS_FILE)))
        try:
            yield tmp
        finally:
            storage.upload_dir(tmp, out.uri)


def fit(trainer, out: StageOutput, train: TrainConfig) -> Result:
    """trainer.fit(); a run that failed for good names its last good checkpoint."""
    try:
        return trainer.fit()
    except TrainingFailedError as exc:
        last = latest_checkpoint(out)
        kept = (
            f"its last good checkpoint is {last}; `medbase train --resume` continues from it"
            if last
            else "it saved no checkpoint"
        )
        raise TrainRunError(
            f"training in {out} failed and cannot continue ({train.max_failures} restarts "
            f"allowed); {kept}.\n{exc}"
        ) from exc


def export_final(out: StageOutput, checkpoint: Checkpoint) -> str:
    """`<run dir>/final`: the last checkpoint's model directory without what only
    resuming reads (training state and position): what serve and eval load, under a
    stable name. Returns its path or URI."""
    fs, src = checkpoint.filesystem, checkpoint.path
    _, dst = storage.resolve(out.child(FINAL_DIR))
    if fs.get_file_info(dst).type != pafs.FileType.NotFound:
        fs.delete_dir(dst)
    fs.create_dir(dst, recursive=True)
    for info in fs.get_file_info(pafs.FileSelector(src)):
        if info.base_name not in (TRAINING_STATE_DIR, TRAIN_META_FILE):
            pafs.copy_files(info.path, f"{dst}/{info.base_name}", fs, fs)
    return out.child(FINAL_DIR)


def local_model_dir(uri: str) -> str:
    """A local directory of the model at `uri` (downloaded when it is remote)."""
    local = StageOutput(uri).local_path()
    if local is not None:
        return str(local)
    # The same local path for the same URI, fetched afresh: eval fingerprints a model by
    # its path, so a re-run (the pipeline's "eval after") must see the path it saw before.
    target = storage.cache_root() / "checkpoints" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Checkpoint(uri).to_directory(str(target))


def read_history(out: StageOutput) -> list[dict[str, float]]:
    """The metrics.csv rows of the run at `out`."""
    local = out.local_path()
    if local is not None:
        return read_metrics(local / METRICS_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp, METRICS_FILE)
        text = out.read_text(METRICS_FILE) if out.exists(METRICS_FILE) else ""
        csv_path.write_text(text)
        return read_metrics(csv_path)
