"""The whole pipeline on one config: prepare -> train -> serve -> eval (before and after).

Used by `medbase demo` (tiny preset, bundled data) and `jobs/pipeline.py` (any preset,
on a cluster). Each stage skips work whose output is already complete, so a re-run
resumes where the last one stopped.
"""

from __future__ import annotations

import logging
from typing import Any

from medbase_ray.config import PipelineConfig

log = logging.getLogger(__name__)


def language_accuracies(report: dict[str, Any], key: str = "accuracy") -> dict[str, float]:
    """Per-language accuracy of an eval report (mean of the language's sources)."""
    return {lang: v["accuracy"] for lang, v in report[key]["languages"].items()}


def evaluate_through_endpoint(
    cfg: PipelineConfig, model_path: str, name: str, out_dir: str
) -> dict[str, Any]:
    """Serve `model_path` as app `name`, run the benchmark against its endpoint, remove it."""
    from ray import serve

    from medbase_ray.eval.runner import run_eval
    from medbase_ray.serve.app import start_server

    url = start_server(model_path, cfg, name=name, route_prefix=f"/{name}")
    log.info("eval: %s served at %s", name, url)
    try:
        return run_eval(cfg, base_url=url, model_path=model_path, out_dir=out_dir)
    finally:
        serve.delete(name)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Prepare, train, then evaluate the untrained and the trained model through Serve.

    Returns {"prepare", "train", "before", "after"}: the stage summaries and the two
    eval reports.
    """
    from medbase_ray.prepare.pipeline import run_prepare
    from medbase_ray.ray_runtime import init_ray
    from medbase_ray.train.run import run_train

    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    prepared = run_prepare(cfg)
    trained = run_train(cfg)
    eval_dir = cfg.run.stage_dir("eval")
    before = evaluate_through_endpoint(
        cfg, cfg.model.name_or_path, "untrained", f"{eval_dir}/untrained"
    )
    after = evaluate_through_endpoint(cfg, trained["checkpoint"], "trained", f"{eval_dir}/trained")
    return {"prepare": prepared, "train": trained, "before": before, "after": after}


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
    mb = before["accuracy"]["macro_average"]["accuracy"]
    ma = after["accuracy"]["macro_average"]["accuracy"]
    lines.append(f"| macro | {100 * mb:.1f} | {100 * ma:.1f} | {100 * (ma - mb):+.1f} |")
    return "\n".join(lines)
