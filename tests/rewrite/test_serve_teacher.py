"""The project's own Ray Serve endpoint as the teacher (real HTTP, the untrained tiny
model): whatever it answers, every input ends in one output or one reject."""

from __future__ import annotations

from pathlib import Path

import pytest
from rewrite_inputs import write_jsonl

from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.readers import read_raw_texts, sample_dir
from medbase_ray.rewrite.parsing import REASONS
from medbase_ray.rewrite.pipeline import run_rewrite
from medbase_ray.rewrite.store import RewriteStore
from medbase_ray.rewrite.teacher import TeacherUnusable

pytestmark = pytest.mark.integration

MAX_TOKENS = 16


def test_rewrite_through_the_serve_endpoint_adds_up(tmp_path: Path, tiny_endpoint) -> None:
    records, _ = read_raw_texts(sample_dir() / "apollo")
    subset = [
        next(r for r in records if r["language"] == lang) for lang in ("en", "zh", "ar", "hi")
    ]
    subset += [r for r in records if r["language"] == "es"][:2]
    input_path = write_jsonl(tmp_path / "sample.jsonl", subset)
    cfg = PipelineConfig.model_validate(
        {
            "run": {"root": str(tmp_path / "runs"), "name": "serve-teacher"},
            "rewrite": {
                "input": str(input_path),
                "tasks": ["qa", "dialogue"],
                "base_url": tiny_endpoint.base_url,
                "model": tiny_endpoint.model,
                "max_tokens": MAX_TOKENS,
                "max_in_flight": 8,
                "num_actors": 1,
            },
        }
    )
    summary = run_rewrite(cfg)
    assert summary["in"] == 2 * len(subset) == summary["out"] + summary["rejected"]
    assert set(summary["rejected_by_reason"]) <= set(REASONS)
    assert "teacher_error" not in summary["rejected_by_reason"]  # the endpoint answered
    usage = summary["usage"]
    assert usage["requests"] >= len(subset) * 2  # each dialogue once, each qa once or twice
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= usage["requests"] * MAX_TOKENS
    ids = [i for i, _ in RewriteStore(summary["output_dir"]).statuses()]
    assert sorted(ids) == sorted(f"{r['id']}#{t}" for r in subset for t in ("qa", "dialogue"))


def test_a_wrong_model_name_stops_the_run_with_a_clear_error(tmp_path: Path, tiny_endpoint) -> None:
    records, _ = read_raw_texts(sample_dir() / "apollo")
    input_path = write_jsonl(tmp_path / "sample.jsonl", records[:4])
    cfg = PipelineConfig.model_validate(
        {
            "run": {"root": str(tmp_path / "runs"), "name": "wrong-model"},
            "rewrite": {
                "input": str(input_path),
                "tasks": ["dialogue"],
                "base_url": tiny_endpoint.base_url,
                "model": "no-such-model",
                "num_actors": 1,
            },
        }
    )
    with pytest.raises(TeacherUnusable) as err:
        run_rewrite(cfg)
    assert "HTTP 404" in str(err.value) and "no-such-model" in str(err.value)
    store = RewriteStore(cfg.run.stage_dir("rewrite"))
    assert store.statuses() == []  # nothing rejected: a re-run with the right model does all
    assert not (Path(store.root) / "_SUCCESS").exists()
