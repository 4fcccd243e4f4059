"""The whole pipeline on one config, stage by stage:

    serve the base model -> rewrite (teacher: that endpoint, unless one is configured)
    -> eval before (through the same endpoint) -> prepare (the inputs plus what rewrite
    wrote) -> tune (language mixtures) -> train (the chosen mixture) -> serve the trained
    checkpoint -> eval after (through its endpoint) -> report.html

Used by `medbase demo` (tiny preset, bundled data) and `jobs/pipeline.py` (any preset, on
a cluster). Each stage skips work whose output is already complete, so a re-run resumes
where the last one stopped. `run_pipeline` takes a `StageTracker` that is told when each
stage starts and what it produced (the demo draws a progress line per stage).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from medbase_ray import storage
from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.readers import sample_dir
from medbase_ray.corpus.rejects import AllRejected
from medbase_ray.eval.runner import run_eval
from medbase_ray.prepare.pipeline import run_prepare
from medbase_ray.ray_runtime import init_ray
from medbase_ray.report.build import write_report
from medbase_ray.rewrite.pipeline import run_rewrite
from medbase_ray.serve.app import start_server
from medbase_ray.stage import StageOutput
from medbase_ray.train.run import run_train
from medbase_ray.tune.outputs import best_mixture_config
from medbase_ray.tune.sweep import run_tune

log = logging.getLogger(__name__)

# The stages in the order they run, as the tracker names them.
STAGES = (
    "rewrite",
    "eval before",
    "prepare",
    "tune",
    "train",
    "serve",
    "eval after",
    "report",
)
BASE_APP, TRAINED_APP = "untrained", "trained"  # Serve app names (and route prefixes)


class StageLine(Protocol):
    def note(self, text: str) -> None:
        """What the stage produced (or is doing), shown on its line."""


class StageTracker(Protocol):
    def stage(self, name: str) -> Any:
        """A context manager around one stage; yields its StageLine."""


class _LogLine:
    def __init__(self, name: str) -> None:
        self.name = name

    def note(self, text: str) -> None:
        log.info("%s: %s", self.name, text)


class LogTracker:
    """The tracker of a job without a terminal: one log line per stage result."""

    @contextmanager
    def stage(self, name: str) -> Iterator[StageLine]:
        log.info("== %s", name)
        yield _LogLine(name)


def language_accuracies(report: dict[str, Any], key: str = "accuracy") -> dict[str, float]:
    """Per-language accuracy of an eval report (mean of the language's sources)."""
    return {lang: v["accuracy"] for lang, v in report[key]["languages"].items()}


def macro_accuracy(report: dict[str, Any]) -> float:
    return report["accuracy"]["macro_average"]["accuracy"]


def _rewrite_note(summary: dict[str, Any]) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in summary.get("rejected_by_reason", {}).items())
    return (
        f"{summary.get('rows_read', '?')} passages -> {summary['in']} items: "
        f"{summary['out']} records, {summary['rejected']} rejected"
        + (f" ({reasons})" if reasons else "")
    )


def _eval_note(report: dict[str, Any]) -> str:
    langs = " ".join(f"{k} {100 * v:.0f}" for k, v in language_accuracies(report).items())
    return f"{report['items']} items, macro {100 * macro_accuracy(report):.1f}% ({langs})"


def run_pipeline(
    cfg: PipelineConfig,
    tracker: StageTracker | None = None,
    keep_serving: bool = False,
) -> dict[str, Any]:
    """Every stage in order (module docstring); returns the stage summaries:
    {"rewrite", "before", "prepare", "tune", "train", "endpoint", "after", "report"}.

    keep_serving: leave the trained model's endpoint up (the demo's last step).
    """
    from ray import serve  # Ray Serve is heavy; the module's users reach it only here

    tracker = tracker or LogTracker()
    cfg = cfg.model_copy(deep=True)
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    out: dict[str, Any] = {}
    eval_dir = cfg.run.stage_dir("eval")

    try:
        with tracker.stage("rewrite") as line:
            # The base model's endpoint: the default teacher, and the "before" of eval.
            line.note(f"serving {cfg.model.name_or_path}")
            base_url = start_server(
                cfg.model.name_or_path, cfg, name=BASE_APP, route_prefix=f"/{BASE_APP}"
            )
            if "base_url" not in cfg.rewrite.model_fields_set:
                cfg.rewrite.base_url = base_url  # the project's own endpoint is the teacher
            line.note(f"teacher {cfg.rewrite.base_url}")
            try:
                out["rewrite"] = run_rewrite(cfg)
            except AllRejected:
                # A teacher that writes nothing usable (the untrained tiny model) is no
                # reason to stop: the summary is written, prepare goes on without records.
                out["rewrite"] = StageOutput.of(cfg.run, "rewrite").summary()
            line.note(_rewrite_note(out["rewrite"]))
        with tracker.stage("eval before") as line:
            out["before"] = run_eval(
                cfg, base_url=base_url, model_path=cfg.model.name_or_path,
                out_dir=f"{eval_dir}/{BASE_APP}",
            )  # fmt: skip
            line.note(_eval_note(out["before"]))
    finally:
        serve.delete(BASE_APP)  # its CPU goes to the training workers

    with tracker.stage("prepare") as line:
        if not cfg.prepare.inputs and out["rewrite"]["out"] > 0:
            cfg.prepare.inputs = [
                str(sample_dir() / "apollo"),
                out["rewrite"]["conversations_dir"],
            ]
        out["prepare"] = run_prepare(cfg)
        totals = out["prepare"]["manifest"]["totals"]
        line.note(
            f"{totals.get('rows')} rows of {cfg.prepare.seq_len} tokens, "
            f"{totals.get('real_tokens')} real tokens, {len(cfg.prepare.inputs) or 1} input(s)"
        )
    with tracker.stage("tune") as line:
        out["tune"] = run_tune(cfg)
        best = out["tune"]["best"]
        line.note(
            f"{len(out['tune']['trials'])} trials x {cfg.tune.trial_max_steps} steps; best "
            f"{out['tune']['metric']} {best.get(out['tune']['metric'], float('nan')):.3f}"
        )
    with tracker.stage("train") as line:
        train_cfg = best_mixture_config(cfg, best["shares"])
        out["train"] = run_train(train_cfg)
        final = out["train"].get("final") or {}
        line.note(
            f"{out['train']['steps']} steps, final loss {final.get('loss', float('nan')):.3f}"
        )
    checkpoint = out["train"]["checkpoint"]
    with tracker.stage("serve") as line:
        out["endpoint"] = start_server(
            checkpoint, cfg, name=TRAINED_APP, route_prefix=f"/{TRAINED_APP}"
        )
        line.note(out["endpoint"])
    try:
        with tracker.stage("eval after") as line:
            out["after"] = run_eval(
                cfg, base_url=out["endpoint"], model_path=checkpoint,
                out_dir=f"{eval_dir}/{TRAINED_APP}",
            )  # fmt: skip
            line.note(_eval_note(out["after"]))
    finally:
        if not keep_serving:
            serve.delete(TRAINED_APP)
    with tracker.stage("report") as line:
        out["report"] = write_report(storage.join(cfg.run.root, cfg.run.name))
        line.note(out["report"])
    return out


def format_comparison(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A Markdown table: accuracy per language before and after training."""
    b, a = language_accuracies(before), language_accuracies(after)
    lines = [
        "| language | untrained % | trained % | gain (points) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for lang in a:
        lines.append(
            f"| {lang} | {100 * b[lang]:.1f} | {100 * a[lang]:.1f} | {100 * (a[lang] - b[lang]):+.1f} |"
        )
    mb, ma = macro_accuracy(before), macro_accuracy(after)
    lines.append(f"| macro | {100 * mb:.1f} | {100 * ma:.1f} | {100 * (ma - mb):+.1f} |")
    return "\n".join(lines)
