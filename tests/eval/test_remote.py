"""The Ray layer: the checkpoint in a Ray actor on the local Ray gives the in-process results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medbase_ray.config import load_config
from medbase_ray.eval.remote import run_eval_on_ray
from medbase_ray.eval.runner import run_eval

pytestmark = pytest.mark.integration


def test_eval_in_a_ray_actor_equals_in_process(
    ray_local, bench_dir: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    cfg = load_config(
        preset="tiny",
        overrides=[
            f"eval.benchmark={bench_dir}",
            f"model.name_or_path={tiny_dir}",
            "eval.mode=cloze",
            "eval.k_shot=1",
            "eval.bootstrap_samples=100",
            "eval.cpu_threads=1",  # a shared 2-core machine: see EvalConfig.cpu_threads
        ],
    )
    on_ray = run_eval_on_ray(cfg, out_dir=str(tmp_path / "ray"), num_gpus=0)
    local = run_eval(cfg, out_dir=str(tmp_path / "local"))
    assert on_ray["run"]["model"] == local["run"]["model"] == str(tiny_dir)

    def scores(name: str) -> dict[str, dict]:
        lines = (tmp_path / name / "results.jsonl").read_text().splitlines()
        return {r["id"]: r["scores"] for r in map(json.loads, lines)}

    remote_scores, local_scores = scores("ray"), scores("local")
    assert remote_scores.keys() == local_scores.keys()
    for key, value in remote_scores.items():
        assert value == pytest.approx(local_scores[key], abs=1e-5)
    assert on_ray["accuracy_norm"] == local["accuracy_norm"]
