"""jobs/*.py, the `ray job submit` entrypoints: each is `medbase <command>` (the same
typer app, options, exit codes and errors), imported and run here in-process."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from medbase_ray.cli import app
from medbase_ray.corpus.readers import sample_dir

JOBS = Path(__file__).resolve().parents[2] / "jobs"
COMMANDS = ("rewrite", "prepare", "train", "tune", "serve", "eval", "pipeline")


def run_job(name: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run jobs/<name>.py as `python jobs/<name>.py <args>` would, in this process."""
    monkeypatch.setattr(sys, "argv", [str(JOBS / f"{name}.py"), *args])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(JOBS / f"{name}.py"), run_name="__main__")
    return stop.value.code


def test_there_is_a_job_per_command() -> None:
    assert sorted(p.stem for p in JOBS.glob("*.py")) == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_job_help_is_the_commands_help(name: str, monkeypatch, capsys) -> None:
    assert run_job(name, "--help", monkeypatch=monkeypatch) == 0
    shown = capsys.readouterr().out
    assert f"medbase {name} [OPTIONS]" in shown
    command = typer.main.get_command(app).commands[name]
    for param in command.params:
        for option in param.opts:
            if option.startswith("--"):
                assert option in shown, (name, option)
    assert "ray job submit" in runpy.run_path(str(JOBS / f"{name}.py"))["__doc__"]


def test_job_refuses_a_bad_config_like_the_cli(monkeypatch, capsys) -> None:
    code = run_job("pipeline", "--set", "prepare.seq_len=3", monkeypatch=monkeypatch)
    assert code == 2
    assert "prepare.seq_len" in capsys.readouterr().err


@pytest.mark.integration
def test_prepare_job_writes_the_prepared_data(tmp_path: Path) -> None:
    """One real stage through its entrypoint, as `ray job submit` starts it (on a slice of
    the bundled QA, to keep it short)."""
    name = "medicalGuideline_en_qa.json"
    conversations = json.loads((sample_dir() / "apollo" / name).read_text(encoding="utf-8"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / name).write_text(json.dumps(conversations[:8], ensure_ascii=False))
    sets = [f"run.root={tmp_path / 'runs'}", f"prepare.inputs={json.dumps([str(corpus)])}"]
    out = subprocess.run(
        [
            sys.executable,
            "jobs/prepare.py",
            "--preset",
            "tiny",
            *[a for s in sets for a in ("--set", s)],
        ],
        cwd=JOBS.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    prepared = tmp_path / "runs" / "tiny" / "prepared"
    assert (prepared / "_SUCCESS").exists()
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert list(manifest["sources"]) == ["medicalGuideline_en"], manifest["sources"].keys()
    assert manifest["totals"]["rows"] > 0
    assert f"prepared: {prepared}" in out.stdout
