"""What a run directory holds, read through StageOutput (local paths and URIs alike).

`collect_run(run_dir)` returns a `RunFacts` with whatever stages exist; a missing or
unfinished stage is None (a partial run still gets a report of what it has).

    <run>/rewrite/_SUCCESS      summary: in / out / rejected (by reason, by task)
    <run>/clean/_SUCCESS        summary: in / kept / removed (contaminated, duplicates)
    <run>/prepared/manifest.json  per source: samples, rows, real tokens, padding
    <run>/tune/results.json     trials ranked, the best mixture
    <run>/train/metrics.csv     per step: loss, lr, ...; _SUCCESS: the summary
    <run>/eval/**/report.json   accuracy per source and language with 95% intervals
    <run>/demo.json             the command, seconds per stage, the endpoint
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from medbase_ray import storage
from medbase_ray.models.checkpoint_info import CHECKPOINT_CONFIG
from medbase_ray.stage import CONFIG, StageOutput

# Eval subdirectories the pipeline writes, in the order they are compared.
EVAL_ORDER = ("untrained", "trained")


@dataclass
class RunFacts:
    run_dir: str
    rewrite: dict[str, Any] | None = None
    clean: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    tune: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    train_metrics: list[dict[str, float]] = field(default_factory=list)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> report.json
    demo: dict[str, Any] | None = None
    configs: dict[str, str] = field(default_factory=dict)  # stage -> config.yaml text

    @property
    def stages(self) -> list[str]:
        """The stages present, in pipeline order."""
        have = {
            "rewrite": self.rewrite,
            "clean": self.clean,
            "prepare": self.manifest,
            "tune": self.tune,
            "train": self.train or self.train_metrics,
            "eval": self.evals,
        }
        return [name for name, value in have.items() if value]


def _read_json(out: StageOutput, *parts: str) -> Any:
    return out.read_json(*parts) if out.exists(*parts) else None


def read_metrics_csv(text: str) -> list[dict[str, float]]:
    """metrics.csv rows as floats, one per step (the last report of a step wins)."""
    rows: dict[int, dict[str, float]] = {}
    for raw in csv.DictReader(io.StringIO(text)):
        row = {k: float(v) for k, v in raw.items() if k and v not in ("", None)}
        if "step" in row:
            rows[int(row["step"])] = row
    return [rows[s] for s in sorted(rows)]


def _eval_reports(run_dir: str) -> dict[str, dict[str, Any]]:
    """report.json of <run>/eval (named "eval") and of each of its subdirectories."""
    root = StageOutput(storage.join(run_dir, "eval"))
    found: dict[str, dict[str, Any]] = {}
    if root.exists("report.json"):
        found["eval"] = root.read_json("report.json")
    fs, path = storage.resolve(root.uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        for info in fs.get_file_info(pafs.FileSelector(path)):
            if info.type == pafs.FileType.Directory and root.exists(info.base_name, "report.json"):
                found[info.base_name] = root.read_json(info.base_name, "report.json")
    order = {name: i for i, name in enumerate(EVAL_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def collect_run(run_dir: str) -> RunFacts:
    """Read every stage output of `run_dir` that exists; raises FileNotFoundError if the
    directory itself does not."""
    if not storage.exists(run_dir):
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    facts = RunFacts(run_dir=str(run_dir))
    stage = {name: StageOutput(storage.join(run_dir, name)) for name in
             ("rewrite", "clean", "prepared", "tune", "train")}  # fmt: skip
    facts.rewrite = stage["rewrite"].summary()
    facts.clean = stage["clean"].summary()
    facts.manifest = _read_json(stage["prepared"], "manifest.json")
    if stage["tune"].is_complete():
        facts.tune = _read_json(stage["tune"], "results.json")
    facts.train = stage["train"].summary()
    if stage["train"].exists("metrics.csv"):
        facts.train_metrics = read_metrics_csv(stage["train"].read_text("metrics.csv"))
    facts.evals = _eval_reports(run_dir)
    facts.demo = _read_json(StageOutput(run_dir), "demo.json")
    for name, out in stage.items():
        for parts in ((CONFIG,), ("final", CHECKPOINT_CONFIG)):  # train: in its checkpoint
            if name not in facts.configs and out.exists(*parts):
                facts.configs[name] = out.read_text(*parts)
    return facts


def config_of(facts: RunFacts) -> str | None:
    """The most complete resolved config of the run: train's (it ran last), else any."""
    for name in ("train", "tune", "prepared", "rewrite"):
        if name in facts.configs:
            return facts.configs[name]
    return None


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)
