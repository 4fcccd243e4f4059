"""`medbase tune` on a real local Ray: Ray Tune trials, each a Ray Train run with
DeepSpeed on the shared prepared sample (tests/conftest.py `prepared_dir`), streaming
dev accuracy per language to Tune; ASHA, an injected failure, a driver killed mid-sweep
and resumed, the regression's proposal trained as a final trial, and every output.

One sweep serves every test (the CPU budget: 2 cores): 1-worker trials, two at a time,
4 steps of 128-token rows, dev accuracy every 2 steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from medbase_ray.config import load_config
from medbase_ray.prepare.config import load_mixture_spec

pytestmark = pytest.mark.integration

LANGS = ["en", "zh", "es", "fr", "ar", "hi"]
FAILING_TRIAL, FAIL_AT_STEP = 5, 2


def sweep_overrides(root: Path) -> list[str]:
    return [
        f"run.root={root}",
        "run.name=sweep",
        "prepare.seq_len=128",
        "train.num_workers=1",  # 1-CPU trials, two side by side on 2 cores
        "train.micro_batch_size=2",
        "train.lr=3e-3",
        "tune.search=random",
        "tune.baselines=[equal, natural]",
        "tune.num_samples=6",
        "tune.trial_max_steps=4",
        "tune.eval_steps=2",
        "tune.scheduler=asha",
        "tune.grace_period_steps=2",
        # Only the best third goes on at the rung: with 5 trials a sweep where ASHA stops
        # none is rare (each later trial goes on about a third of the time).
        "tune.reduction_factor=3",
        "tune.max_concurrent_trials=2",
        f"tune.fault_injection={{trial: {FAILING_TRIAL}, at_step: {FAIL_AT_STEP}}}",
        "tune.proposal_candidates=2000",
    ]


def finished_trials(tune_dir: Path) -> set[str]:
    """Trials Tune's saved experiment state holds as TERMINATED (what a restore keeps)."""
    done = set()
    for state in (tune_dir / "ray" / "sweep").glob("experiment_state*.json"):
        try:
            trials = [json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]]
        except (OSError, ValueError, KeyError):  # being written
            continue
        done |= {t["trial_id"] for t in trials if t.get("status") == "TERMINATED"}
    return done


@pytest.fixture(scope="module")
def sweep(ray_local, prepared_dir, tmp_path_factory) -> dict:
    """The sweep, driven first by `medbase tune` in a subprocess killed once a trial has
    finished, then resumed in this process with `run_tune(resume=True)`."""
    import ray

    from medbase_ray.tune.sweep import run_tune

    root = tmp_path_factory.mktemp("tune")
    overrides = sweep_overrides(root)
    tune_dir = root / "sweep" / "tune"
    cmd = [sys.executable, "-m", "medbase_ray.cli", "tune", "--data", prepared_dir,
           "--address", ray.get_runtime_context().gcs_address]  # fmt: skip
    for o in overrides:
        cmd += ["--set", o]
    log = open(root / "driver.log", "w")  # noqa: SIM115 (closed below)
    driver = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 1800  # a safety net: a crowded machine takes minutes per trial
    while not finished_trials(tune_dir) and driver.poll() is None and time.time() < deadline:
        time.sleep(1)
    before_kill = finished_trials(tune_dir)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver dies mid-sweep; its trials with it
    driver.wait()
    log.close()
    assert before_kill, (root / "driver.log").read_text()[-3000:]
    # The reports each finished trial had given Tune, to show they are not run again.
    reports = {t: _tune_reports(tune_dir, t) for t in before_kill}
    cfg = load_config(preset="tiny", overrides=overrides)
    out = run_tune(cfg, resume=True, data_dir=prepared_dir)
    return {"cfg": cfg, "out": out, "dir": tune_dir, "before_kill": before_kill,
            "reports": reports}  # fmt: skip


def _tune_reports(tune_dir: Path, trial_id: str) -> int:
    files = list((tune_dir / "ray" / "sweep").glob(f"*{trial_id}*/result.json"))
    return sum(len(f.read_text().splitlines()) for f in files)


def test_trials_stream_reports_asha_stops_early_and_a_failure_is_recorded(sweep) -> None:
    out, t = sweep["out"], sweep["cfg"].tune
    # The injected failure: recorded as failed at its step, the sweep went on.
    assert [f["trial"].endswith(f"_{FAILING_TRIAL:05d}") for f in out["failed"]] == [True]
    assert "fault_injection" in out["failed"][0]["error"]
    assert out["failed"][0]["step"] == FAIL_AT_STEP - 1  # its last report before failing
    sweep_trials = [r for r in out["trials"] if r["origin"] != "proposal"]
    assert len(sweep_trials) == t.num_samples - 1
    assert {r["origin"] for r in sweep_trials} >= {"equal", "natural", "random"}
    # ASHA (training steps as time) stopped at least one trial at its first rung; the
    # others ran every step. Stopped trials reported dev figures at step 2 only.
    early = [r for r in sweep_trials if r["stopped_early"]]
    assert early and all(r["step"] == t.grace_period_steps for r in early)
    full = [r for r in sweep_trials if not r["stopped_early"]]
    assert full and all(r["step"] == t.trial_max_steps for r in full)
    for r in sweep_trials:
        per_lang = [r[f"dev_accuracy_{lang}"] for lang in LANGS]
        assert abs(r["dev_accuracy"] - sum(per_lang) / len(per_lang)) < 1e-9
    # The realised token shares of the few rows each trial trained on (8 rows: coarse).
    for r in sweep_trials:
        assert set(r["realised_shares"]) <= set(LANGS)
        assert sum(r["realised_shares"].values()) == pytest.approx(1.0)
    assert out["trial_steps"] == sum(r["step"] for r in out["trials"]) + FAIL_AT_STEP - 1


def test_resume_keeps_the_trials_finished_before_the_driver_died(sweep) -> None:
    for trial_id, reports in sweep["reports"].items():
        row = next(r for r in sweep["out"]["trials"] if r["trial"] == trial_id)
        # Train reports at steps 2 and 4; a trial ASHA stopped at its rung (step 2) once.
        assert reports >= (1 if row["stopped_early"] else 2)
        assert _tune_reports(sweep["dir"], trial_id) == reports  # none run again


def test_outputs_report_plots_and_the_ranking(sweep) -> None:
    d, out = sweep["dir"], sweep["out"]
    names = ["results.json", "results.md", "best_mixture.yaml", "best_config.yaml",
             "proposal.json", "pareto.json", "report.md", "_SUCCESS",
             "accuracy_vs_weight.png", "macro_by_trial.png", "pareto.png"]  # fmt: skip
    for name in names:
        assert (d / name).exists(), name
    for png in d.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    report = (d / "report.md").read_text()
    assert "![" in report and "Pareto" in report and out["best"]["trial"] in report
    assert len((d / "results.md").read_text().splitlines()) == 2 + len(out["trials"])
    ranked = [r["dev_accuracy"] for r in out["trials"]]
    # Values that differ, so a flipped mode or a wrong key would fail.
    assert ranked == sorted(ranked, reverse=True) and ranked[0] > ranked[-1]
    assert out["best"] == out["trials"][0]  # no floors: the top of the ranking
    # The Pareto front: no trial beats one of its members on every language.
    front = [r for r in out["trials"] if r["trial"] in out["pareto"]]
    assert front and json.loads((d / "pareto.json").read_text()) == json.loads(json.dumps(front))
    for member in front:
        for other in out["trials"]:
            assert not all(other[f"dev_accuracy_{g}"] > member[f"dev_accuracy_{g}"] for g in LANGS)


def test_a_trial_rescored_by_the_eval_stage_gives_its_figures(sweep, tmp_path) -> None:
    """The figures a trial streamed to Tune are the eval stage's on the dev split."""
    from medbase_ray.eval.runner import run_eval

    trial = next(r for r in sweep["out"]["trials"] if not r["stopped_early"])
    cfg = sweep["cfg"].model_copy(deep=True)
    ev = cfg.eval
    ev.split, ev.dev_split, ev.k_shot, ev.bootstrap_samples, ev.base_url = "dev", "test", 0, 0, None
    report = run_eval(cfg, model_path=trial["checkpoint"], out_dir=str(tmp_path))
    assert report["accuracy"]["macro_average"]["accuracy"] == pytest.approx(trial["dev_accuracy"])
    for lang in LANGS:
        measured = report["accuracy"]["languages"][lang]["accuracy"]
        assert measured == pytest.approx(trial[f"dev_accuracy_{lang}"]), lang


def test_the_proposal_is_trained_and_measured(sweep) -> None:
    out, t = sweep["out"], sweep["cfg"].tune
    proposal, regression = out["proposal"], out["regression"]
    # The fit: the trials that ran every step, or, when ASHA left fewer than 3 of them,
    # every trial at its first rung (which all the trials that did not fail reached).
    sweep_trials = [r for r in out["trials"] if r["origin"] != "proposal"]
    full = [r for r in sweep_trials if not r["stopped_early"]]
    if len(full) >= 3:
        assert (regression["fit_step"], regression["n_trials"]) == (t.trial_max_steps, len(full))
    else:
        assert regression["fit_step"] == t.grace_period_steps
        assert regression["n_trials"] == len(sweep_trials)
    assert regression["n_trials"] >= 3 and set(regression["fits"]) >= {"dev_accuracy"}
    assert isinstance(regression["trusted"], bool)
    assert regression["trusted"] or regression["why_not"]  # says why it is not trusted
    assert sum(proposal["shares"].values()) == pytest.approx(1.0)
    measured = next(r for r in out["trials"] if r["origin"] == "proposal")
    assert measured["shares"] == pytest.approx(proposal["shares"])
    assert measured["step"] == t.trial_max_steps
    # Every trial's figures by step (dev figures every 2 steps), the last its final ones.
    for r in [*sweep_trials, measured]:
        assert set(r["by_step"]) == ({"2"} if r["stopped_early"] else {"2", "4"}), r["trial"]
        last = r["by_step"][str(r["step"])]["dev_accuracy"]
        assert last == pytest.approx(r["dev_accuracy"], abs=1e-12)
    # Measured at the step the fit predicts: the proposal reported there too.
    pm = proposal["measured"]["dev_accuracy"]
    at_fit_step = measured["by_step"][str(regression["fit_step"])]["dev_accuracy"]
    assert pm["measured"] == pytest.approx(at_fit_step, abs=1e-12)
    assert 0 <= pm["predicted"] <= 1
    assert json.loads((sweep["dir"] / "proposal.json").read_text()) == json.loads(
        json.dumps(proposal)
    )


def test_best_mixture_file_loads_and_trains(sweep, prepared_dir, tmp_path) -> None:
    from medbase_ray.train.run import run_train

    d, best = sweep["dir"], sweep["out"]["best"]
    spec = load_mixture_spec(d / "best_mixture.yaml")
    assert spec.by == "language" and spec.weights == pytest.approx(best["shares"])
    cfg = load_config(d / "best_config.yaml", [f"run.root={tmp_path}", "train.max_steps=2"])
    assert cfg.mixture == spec and cfg.tune.fault_injection is None
    out = run_train(cfg, data_dir=prepared_dir)
    assert out["steps"] == 2 and Path(out["checkpoint"], "config.json").exists()
    realised = out["mixture"]["language_shares"]
    assert all(abs(realised.get(g, 0) - s) < 0.05 for g, s in best["shares"].items())


def test_a_finished_sweep_is_returned_as_it_is(sweep) -> None:
    from medbase_ray.tune.sweep import run_tune

    again = run_tune(sweep["cfg"])
    assert again["trials"] == json.loads(json.dumps(sweep["out"]["trials"]))
    assert yaml.safe_load((sweep["dir"] / "config.yaml").read_text())["tune"]["num_samples"] == 6


def test_cli_refuses_a_grid_without_mixtures(tmp_path) -> None:
    from typer.testing import CliRunner

    from medbase_ray.cli import app

    out = CliRunner().invoke(
        app, ["tune", "--set", f"run.root={tmp_path}", "--set", "tune.search=grid"]
    )
    assert out.exit_code == 2, out.output
    assert "tune" in out.output and "grid" in out.output
    assert list(tmp_path.iterdir()) == []  # nothing written under the run root
