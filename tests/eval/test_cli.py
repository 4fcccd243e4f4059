"""`medbase eval` as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import TEST_ITEMS, write_json


def medbase(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medbase_ray.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_eval_command_writes_the_report(bench_dir: Path, tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = medbase(
        "eval", "--preset", "tiny", "--checkpoint", str(tiny_dir), "--mode", "loglikelihood",
        "--set", f"eval.benchmark={bench_dir}", "--set", f"run.root={out}",
        "--set", "eval.bootstrap_samples=50", "--set", "eval.cpu_threads=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stage = out / "tiny" / "eval"
    report = json.loads((stage / "report.json").read_text())
    assert report["run"]["mode"] == "loglikelihood" and report["items"] == len(TEST_ITEMS)
    assert "| six-language macro |" in result.stdout
    assert str(stage) in result.stdout


def test_eval_command_names_the_bad_item(tmp_path: Path) -> None:
    bad = [dict(i) for i in TEST_ITEMS]
    bad[4]["answer"] = "(F)"
    path = write_json(tmp_path / "bad.json", bad)
    result = medbase(
        "eval", "--set", f"eval.benchmark={path}", "--set", "eval.k_shot=0",
        "--set", f"run.root={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 2
    assert "bad.json, row 4, field 'answer': (F) is not one of the options" in result.stderr


def test_eval_command_reports_an_unreachable_endpoint(bench_dir: Path, tmp_path: Path) -> None:
    result = medbase(
        "eval", "--base-url", "http://127.0.0.1:9/v1", "--set", f"eval.benchmark={bench_dir}",
        "--set", "eval.max_retries=0", "--set", f"run.root={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 1
    assert "error from the endpoint: Connection error" in result.stderr
