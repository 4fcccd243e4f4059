"""`ray job submit` of jobs/pipeline.py to a real `ray start --head` cluster with token
authentication (tests/jobs/conftest.py), exactly as docs/README give the command: the
working dir is uploaded (without .git, .venv, data and run outputs: jobs/runtime_env.yaml)
and the job runs with the cluster's Python.

The tiny preset, kept short: a few rewrite passages, two tune trials of two steps side
by side, a few train steps and a benchmark of one item per language.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from medbase_ray.corpus.languages import LANGUAGES
from medbase_ray.corpus.readers import sample_dir
from medbase_ray.net import free_port

pytestmark = pytest.mark.integration

SUBMIT_TIMEOUT_S = 1200  # a quiet machine takes a few minutes; a shared one much longer


def submit(ray_head, *job_args: str) -> tuple[str, object]:
    """`ray job submit ... -- python jobs/pipeline.py <job_args>`; (submission id, result)."""
    submission_id = f"medbase-test-{uuid.uuid4().hex[:8]}"
    result = ray_head.ray(
        "job", "submit", "--address", ray_head.dashboard_url,
        "--working-dir", ".", "--runtime-env", "jobs/runtime_env.yaml",
        "--submission-id", submission_id,
        "--", "python", "jobs/pipeline.py", *job_args,
        timeout_s=SUBMIT_TIMEOUT_S,
    )  # fmt: skip
    return submission_id, result


def job_status(ray_head, submission_id: str) -> str:
    """The job's status from the Jobs REST API (PENDING, RUNNING, SUCCEEDED, FAILED...)."""
    return ray_head.job_info(submission_id)["status"]


def write_benchmark_slice(root: Path, per_language: int) -> Path:
    """The bundled benchmark cut to `per_language` items per language, test and dev."""
    from medbase_ray.corpus.readers import read_eval_items

    bench = root / "bench"
    bench.mkdir()
    for split in ("test", "dev"):
        source = sample_dir() / "xmedbench" / f"{split}.json"
        raw = json.loads(source.read_text(encoding="utf-8"))
        items, _ = read_eval_items(source)
        taken: dict[str, int] = {}
        keep = []
        for raw_item, item in zip(raw, items, strict=True):
            if taken.get(item["language"], 0) < per_language:
                taken[item["language"]] = taken.get(item["language"], 0) + 1
                keep.append(raw_item)
        (bench / f"{split}.json").write_text(json.dumps(keep, ensure_ascii=False))
    return bench


def write_rewrite_slice(root: Path, passages: int) -> Path:
    raw = root / "raw"
    raw.mkdir()
    name = "medicalGuideline_en_text.json"
    texts = json.loads((sample_dir() / "apollo" / name).read_text(encoding="utf-8"))
    (raw / name).write_text(json.dumps(texts[:passages], ensure_ascii=False))
    return raw


def short_run(tmp_path: Path) -> list[str]:
    bench = write_benchmark_slice(tmp_path, per_language=1)
    raw = write_rewrite_slice(tmp_path, passages=2)
    sets = [
        f"run.root={tmp_path / 'runs'}",
        "run.name=job",
        f"rewrite.input={raw}",
        "rewrite.max_tokens=16",
        f"eval.benchmark={bench}",
        "tune.num_samples=2",
        "tune.trial_max_steps=2",
        # The two trials side by side, one worker each (the same global batch).
        "tune.trial_num_workers=1",
        "tune.max_concurrent_trials=2",
        "train.max_steps=3",
        f"serve.port={free_port()}",
    ]
    return [arg for s in sets for arg in ("--set", s)]


def test_pipeline_job_succeeds_and_writes_every_stage(ray_head, tmp_path: Path) -> None:
    submission_id, result = submit(ray_head, "--preset", "tiny", *short_run(tmp_path))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert job_status(ray_head, submission_id) == "SUCCEEDED"
    run = tmp_path / "runs" / "job"
    for stage in ("rewrite", "prepared", "tune", "train", "eval/untrained", "eval/trained"):
        assert (run / stage / "_SUCCESS").exists(), stage
    assert json.loads((run / "prepared" / "manifest.json").read_text())["totals"]["rows"] > 0
    checkpoint = next(line for line in result.stdout.splitlines() if line.startswith("checkpoint:"))
    assert (Path(checkpoint.split(":", 1)[1].strip()) / "config.json").exists()
    report = json.loads((run / "eval" / "trained" / "report.json").read_text())
    assert report["items"] == len(LANGUAGES)  # one item per language, every one scored
    assert (run / "report.html").exists()
    # The working dir went up without the venv and git history, with the bundled data.
    found = ray_head.temp_dir.glob("session_*/runtime_resources/working_dir_files/*")
    uploads = [u for u in found if u.is_dir()]  # (Ray keeps the downloaded zip beside it)
    assert uploads and not any((u / ".venv").exists() or (u / ".git").exists() for u in uploads)
    assert all((u / "medbase_ray" / "corpus" / "data").is_dir() for u in uploads)


def test_failed_job_names_the_stage_and_the_reason(ray_head, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-corpus"
    submission_id, result = submit(
        ray_head, "--preset", "tiny", "--set", f"run.root={tmp_path}",
        "--set", f"rewrite.input={missing}", "--set", f"serve.port={free_port()}",
    )  # fmt: skip
    assert result.returncode != 0
    assert job_status(ray_head, submission_id) == "FAILED", (result.stdout + result.stderr)[-4000:]
    logs = ray_head.ray("job", "logs", "--address", ray_head.dashboard_url, submission_id)
    last = [line for line in logs.stdout.splitlines() if line.strip()][-3:]
    assert any("failed in stage rewrite" in line and str(missing) in line for line in last), last
