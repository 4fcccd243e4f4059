"""`medbase tune` on a real local Ray: Ray Tune trials, each a Ray Train run with
DeepSpeed on the prepared bundled sample, scored on the benchmark's dev split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medbase_ray.config import load_config
from medbase_ray.corpus.languages import LANGUAGES

pytestmark = pytest.mark.integration

EQUAL = dict.fromkeys(LANGUAGES, 1.0)


def sweep_config(root: Path, *overrides: str):
    grid = json.dumps([{"en": 1.0}, EQUAL])
    return load_config(
        preset="tiny",
        overrides=[
            f"run.root={root}",
            "run.name=sweep",
            "prepare.seq_len=128",
            "train.micro_batch_size=2",
            "train.log_steps=2",
            "tune.search=grid",
            f"tune.grid={grid}",
            "tune.num_samples=1",
            "tune.trial_max_steps=6",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def sweep(ray_local, tmp_path_factory) -> dict:
    from medbase_ray.tune.sweep import run_tune

    root = tmp_path_factory.mktemp("tune")
    cfg = sweep_config(root)
    return {"cfg": cfg, "out": run_tune(cfg), "dir": root / "sweep" / "tune"}


def test_each_trial_trains_on_its_mixture_and_is_scored_per_language(sweep) -> None:
    out = sweep["out"]
    assert out["failed"] == [] and len(out["trials"]) == 2
    by_shares = {tuple(sorted(t["shares"].items())): t for t in out["trials"]}
    en_only = by_shares[
        (("ar", 0.0), ("en", 1.0), ("es", 0.0), ("fr", 0.0), ("hi", 0.0), ("zh", 0.0))
    ]
    equal = next(t for t in out["trials"] if t is not en_only)
    # The realised token shares of what each trial trained on follow its weights.
    assert {k: v for k, v in en_only["realised_shares"].items() if v > 0} == {"en": 1.0}
    assert set(equal["realised_shares"]) == set(LANGUAGES)
    for share in equal["realised_shares"].values():
        assert abs(share - 1 / 6) < 0.03, equal["realised_shares"]
    for trial in out["trials"]:
        assert trial["steps"] == 6
        per_lang = [trial[f"dev_accuracy_{lang}"] for lang in LANGUAGES]
        assert all(0.0 <= a <= 1.0 for a in per_lang)
        assert abs(trial["dev_accuracy"] - sum(per_lang) / len(per_lang)) < 1e-9
        assert Path(trial["checkpoint"], "config.json").exists()  # a loadable HF model dir
    assert [t["dev_accuracy"] for t in out["trials"]] == sorted(
        (t["dev_accuracy"] for t in out["trials"]), reverse=True
    )
    assert out["best"] == out["trials"][0]


def test_outputs_and_best_config(sweep) -> None:
    d = sweep["dir"]
    for name in ("results.json", "results.md", "best_config.yaml", "_SUCCESS"):
        assert (d / name).exists(), name
    assert len((d / "results.md").read_text().splitlines()) == 2 + 2
    # The sweep's config with the best mixture: `medbase train -c best_config.yaml`.
    cfg = load_config(d / "best_config.yaml")
    assert cfg.mixture.by == "language"
    assert cfg.mixture.weights == pytest.approx(sweep["out"]["best"]["shares"])
    assert cfg.model_dump(exclude={"mixture"}) == sweep["cfg"].model_dump(exclude={"mixture"})


def test_a_finished_sweep_is_returned_as_it_is(sweep) -> None:
    from medbase_ray.tune.sweep import run_tune

    again = run_tune(sweep["cfg"])
    assert again["trials"] == json.loads(json.dumps(sweep["out"]["trials"]))


def test_cli_refuses_a_grid_without_mixtures(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "medbase_ray.cli", "tune", "--set", f"run.root={tmp_path}",
         "--set", "tune.search=grid"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "tune" in out.stderr and "grid" in out.stderr
    assert not (tmp_path / "demo").exists()
