"""The `medbase` command line, in-process (typer's runner); `medbase --help` also as the
real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medbase_ray.cli import app
from medbase_ray.doctor import cluster_verdict, format_report

COMMANDS = ("rewrite", "prepare", "train", "tune", "serve", "eval", "pipeline", "demo", "doctor")


def medbase(*args: str):
    return CliRunner().invoke(app, list(args), prog_name="medbase")


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "medbase_ray.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    out = medbase(command, "--help")
    assert out.exit_code == 0, out.output
    assert f"medbase {command} [OPTIONS]" in out.output


def test_invalid_config_fails_before_work(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("prepare:\n  seq_len: 3\n")
    out = medbase("prepare", "--config", str(bad))
    assert out.exit_code == 2
    assert "prepare.seq_len" in out.stderr and str(bad) in out.stderr


@pytest.mark.integration
def test_doctor_reaches_the_local_ray(ray_local) -> None:
    import ray

    address = ray.get_runtime_context().gcs_address
    out = medbase("doctor", "--skip-ops", "--json", "--address", address)
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["packages"]["ray"] != "not installed"
    assert report["devices"]["cpus"] >= 1
    assert report["deepspeed_cpu_op"]["ok"] is None
    assert report["ray_cluster"]["ok"] is True, report["ray_cluster"]
    assert report["ray_cluster"]["detail"].startswith(address)
    # This session's Ray runs with the auth mode its ray.init() set in the environment.
    assert report["ray_auth"]["cluster_mode"] == os.environ.get("RAY_AUTH_MODE", "disabled")
    assert "ray auth" in format_report(report)


def test_doctor_says_plainly_when_no_cluster_runs() -> None:
    """What `probe_cluster` prints on a laptop without `ray start`: not a failure."""
    verdict = cluster_verdict("auto", {"state": "none", "found": []})
    assert verdict["ok"] is None
    report = {
        "python": "3.11",
        "packages": {"ray": "2.60.0"},
        "devices": {"cpus": 2, "cuda_gpus": 0},
        "deepspeed_cpu_op": {"ok": None, "detail": "skipped"},
        "ray_cluster": verdict,
        "ray_auth": {"client_mode": None, "token": None, "cluster_mode": None},
    }
    text = format_report(report)
    assert "FAIL" not in text
    assert "ray cluster   -: no Ray cluster running on this machine" in text
    assert "RAY_AUTH_MODE=(unset), no token found" in text


def test_doctor_names_a_missing_token() -> None:
    verdict = cluster_verdict("10.0.0.1:6379", {"state": "auth", "detail": "Unauthorized"})
    assert verdict["ok"] is False
    assert "RAY_AUTH_MODE=token" in verdict["detail"] and "10.0.0.1:6379" in verdict["detail"]


def test_pipeline_failure_ends_with_the_stage_and_the_reason(monkeypatch) -> None:
    """A fault injected into the second stage: exit 1, the stage and the reason last."""
    import medbase_ray.pipeline

    def run_pipeline_failing_in_prepare(cfg, tracker):
        with tracker.stage("rewrite"):
            pass
        with tracker.stage("prepare"):
            raise FileNotFoundError("corpus/missing.json")

    monkeypatch.setattr(medbase_ray.pipeline, "run_pipeline", run_pipeline_failing_in_prepare)
    out = medbase("pipeline", "--preset", "tiny")
    assert out.exit_code == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last == "error: failed in stage prepare: FileNotFoundError: corpus/missing.json"
    assert "Traceback" in out.stderr
