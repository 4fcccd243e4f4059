"""The `medbase` command line, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STAGES = ("rewrite", "prepare", "train", "tune", "serve", "eval", "demo", "doctor")


def medbase(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medbase_ray.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_stage() -> None:
    out = medbase("--help")
    assert out.returncode == 0
    for stage in STAGES:
        assert stage in out.stdout


def test_each_stage_has_help() -> None:
    for stage in STAGES:
        out = medbase(stage, "--help")
        assert out.returncode == 0, (stage, out.stderr)
        assert "Usage" in out.stdout


def test_invalid_config_fails_before_work(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("prepare:\n  seq_len: 3\n")
    out = medbase("prepare", "--config", str(bad))
    assert out.returncode == 2
    assert "prepare.seq_len" in out.stderr and str(bad) in out.stderr


def test_doctor_reports_versions_and_devices() -> None:
    out = medbase("doctor", "--skip-ops", "--json")
    assert out.returncode == 0, out.stderr
    import json

    report = json.loads(out.stdout)
    assert report["packages"]["ray"] != "not installed"
    assert report["devices"]["cpus"] >= 1
    assert report["deepspeed_cpu_op"]["ok"] is None
    assert isinstance(report["ray_cluster"]["ok"], bool)
