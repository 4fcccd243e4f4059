"""The mixture optimizer's pure parts, without Ray: baselines, the regression and its
leave-one-out figures, the proposal under floors, the best trial under floors, the
Pareto front, and the "wiring means something" check on synthetic trials."""

from __future__ import annotations

import numpy as np
import pytest

from medbase_ray.config import ConfigError, load_config
from medbase_ray.tune.analysis import choose_and_front, fit_and_propose
from medbase_ray.tune.baselines import (
    language_tokens,
    named_mixtures,
    temperature_shares,
    unimax_shares,
)
from medbase_ray.tune.config import TuneConfig
from medbase_ray.tune.regression import (
    choose_best,
    fit_target,
    is_trustworthy,
    pareto_front,
    propose_mixture,
    spearman,
)

LANGS = ["en", "zh", "hi"]
TOKENS = {"en": 8000.0, "zh": 1000.0, "hi": 1000.0}


def test_baselines_follow_their_definitions() -> None:
    tune = TuneConfig(languages=LANGS, baselines=["equal", "natural", "temperature", "unimax"])
    named = named_mixtures(tune, TOKENS, budget_tokens=6000)
    assert named["equal"] == pytest.approx({"en": 1 / 3, "zh": 1 / 3, "hi": 1 / 3})
    assert named["natural"] == pytest.approx({"en": 0.8, "zh": 0.1, "hi": 0.1})
    # p ∝ n^0.3: en's share 8^0.3 times zh's.
    t = named["temperature"]
    assert t["en"] / t["zh"] == pytest.approx(8**0.3) and t["zh"] == pytest.approx(t["hi"])
    # 6000 tokens, 4 epochs cap: small languages get their uniform 2000 (under the 4000
    # cap); with a budget of 12000 each small language is capped at 4000, en gets the rest.
    assert "unimax" not in named  # 6000 -> equal shares, which run once (named "equal")
    assert unimax_shares(TOKENS, 12_000, 4.0) == pytest.approx(
        {"en": 4000 / 12000, "zh": 4000 / 12000, "hi": 4000 / 12000}
    )
    assert unimax_shares(TOKENS, 20_000, 4.0) == pytest.approx(
        {"en": 12000 / 20000, "zh": 4000 / 20000, "hi": 4000 / 20000}
    )
    # Beyond every cap: shares of the caps (4 epochs of everything).
    assert unimax_shares(TOKENS, 1e9, 4.0) == pytest.approx(temperature_shares(TOKENS, 1.0))
    manifest = {
        "sources": {
            "a_en": {"language": "en", "real_tokens": 5},
            "b_en": {"language": "en", "real_tokens": 7},
            "a_fr": {"language": "fr", "real_tokens": 3},
        }
    }
    assert language_tokens(manifest, ["en", "zh"]) == {"en": 12.0, "zh": 0.0}


def test_spearman_and_trust() -> None:
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.array([1, 1, 1]), np.array([1, 2, 3])))
    assert is_trustworthy(8, 0.7) == (True, "")
    assert not is_trustworthy(3, 0.9)[0]
    trusted, why = is_trustworthy(8, -0.4)
    assert not trusted and "negative" in why


def _synthetic(n: int, seed: int, noise: float = 0.01):
    """Trials on data where each language's dev questions are learnable only from that
    language: accuracy_l = 0.25 + gain_l * sqrt(share_l) (+ noise)."""
    rng = np.random.default_rng(seed)
    gains = {"en": 0.5, "zh": 0.3, "hi": 0.15}  # hi learns least per unit of weight
    rows = []
    for i, shares in enumerate(rng.dirichlet(np.ones(3), size=n)):
        row = {
            "trial": f"t{i}",
            "origin": "random",
            "shares": dict(zip(LANGS, shares, strict=True)),
        }
        for lang, s in zip(LANGS, shares, strict=True):
            row[f"dev_accuracy_{lang}"] = 0.25 + gains[lang] * np.sqrt(s) + rng.normal(0, noise)
        row["dev_accuracy"] = float(np.mean([row[f"dev_accuracy_{lang}"] for lang in LANGS]))
        rows.append(row)
    return rows


def test_regression_on_trials_where_each_language_learns_from_its_own_data() -> None:
    tune = TuneConfig(languages=LANGS, proposal_candidates=5000, proposal_top_k=50)
    rows = _synthetic(12, seed=1)
    out = fit_and_propose(rows, tune)
    assert out["n_trials"] == 12 and out["trusted"], out.get("why_not")
    # More weight on a language, more accuracy on it: the own-weight coefficient is > 0.
    assert all(c > 0 for c in out["own_weight_coefficients"].values())
    for name, fit in out["fits"].items():
        assert fit["model"] in ("linear", "boosted") and fit["loo_spearman"] > 0.5, name
        assert fit["loo_mse"][fit["model"]] == min(fit["loo_mse"].values())
    proposal = out["proposal"]
    assert sum(proposal["shares"].values()) == pytest.approx(1.0)
    # The proposal predicts at least the best trial's macro, and does not starve the
    # weakest language as the trial with the least weight on it does.
    best_trial = max(r["dev_accuracy"] for r in rows)
    assert proposal["predicted"]["dev_accuracy"] >= best_trial - 0.01
    weakest = min(LANGS, key=lambda lang: np.mean([r[f"dev_accuracy_{lang}"] for r in rows]))
    starving = min(rows, key=lambda r: r["shares"][weakest])
    assert proposal["shares"] != starving["shares"]
    assert proposal["shares"][weakest] > starving["shares"][weakest]


def test_proposal_honours_floors_and_says_when_none_is_met() -> None:
    rows = _synthetic(12, seed=2, noise=0.0)
    tune = TuneConfig(languages=LANGS, proposal_candidates=5000)
    fits = {}
    x = np.array([[r["shares"][lang] for lang in LANGS] for r in rows])
    for target in [f"dev_accuracy_{lang}" for lang in LANGS] + ["dev_accuracy"]:
        fits[target] = fit_target(x, np.array([r[target] for r in rows]), target, LANGS)
    free = propose_mixture(fits, x, LANGS, "dev_accuracy", {}, n_candidates=5000, top_k=50)
    floor = free["predicted"]["dev_accuracy_hi"] + 0.03
    held = propose_mixture(
        fits, x, LANGS, "dev_accuracy", {"hi": floor}, n_candidates=5000, top_k=1
    )
    assert held["feasible"] > 0 and held["predicted"]["dev_accuracy_hi"] >= floor - 1e-9
    assert held["shares"]["hi"] > free["shares"]["hi"]
    impossible = propose_mixture(fits, x, LANGS, "dev_accuracy", {"hi": 0.99}, n_candidates=2000)
    assert impossible["feasible"] == 0  # the one missing the floor by the least
    assert impossible["shares"]["hi"] > 0.9 * x[:, LANGS.index("hi")].max()
    # Candidates stay where the trials are: no share beyond the trials' largest.
    assert all(free["shares"][g] <= x[:, i].max() + 1e-9 for i, g in enumerate(LANGS))
    assert tune.floors == {}


def test_too_few_trials_give_no_proposal() -> None:
    out = fit_and_propose(_synthetic(2, seed=3), TuneConfig(languages=LANGS))
    assert out["proposal"] is None and not out["trusted"] and "2 finished" in out["why_not"]


def test_asha_leaving_too_few_finished_trials_fits_at_its_first_rung() -> None:
    """Two trials ran every step, four were stopped at the rung: the fit takes all six
    at the rung's step (one budget), and the proposal says which step it predicts."""
    tune = TuneConfig(languages=LANGS, scheduler="asha", grace_period_steps=2,
                      trial_max_steps=8)  # fmt: skip
    rows = _synthetic(6, seed=4)
    targets = [f"dev_accuracy_{lang}" for lang in LANGS] + ["dev_accuracy"]
    for i, row in enumerate(rows):
        row["by_step"] = {"2": {t: row[t] - 0.05 for t in targets}}
        row["stopped_early"] = i >= 2
        if row["stopped_early"]:  # its last figures are the rung's
            row.update(row["by_step"]["2"])
    out = fit_and_propose(rows, tune)
    assert out["n_trials"] == 6 and out["fit_step"] == 2
    assert out["proposal"]["fit_step"] == 2
    # The figures fitted are the rung's: the same fit as on those figures directly.
    at_rung = [r | r["by_step"]["2"] | {"stopped_early": False} for r in rows]
    direct = fit_and_propose(at_rung, TuneConfig(languages=LANGS, trial_max_steps=2))
    assert out["proposal"]["predicted"] == pytest.approx(direct["proposal"]["predicted"])
    # FIFO, or enough trials that ran every step: their final figures, as before.
    fifo = fit_and_propose(rows, TuneConfig(languages=LANGS, trial_max_steps=8))
    assert fifo["n_trials"] == 2 and fifo["proposal"] is None and fifo["fit_step"] == 8
    for row in rows:
        row["stopped_early"] = False
    assert fit_and_propose(rows, tune)["fit_step"] == 8


def test_a_trial_run_again_on_resume_keeps_its_last_runs_figures() -> None:
    """A trial running when the driver died reported steps 2 and 4, then ran again from
    its start on --resume and was stopped at step 2: Tune's record holds both runs, the
    trial's figures by step only the last (as its final metrics do)."""
    from types import SimpleNamespace

    import pandas as pd

    from medbase_ray.tune.sweep import figures_by_step

    frame = pd.DataFrame({"step": [2, 4, 2], "dev_accuracy": [0.2, 0.3, 0.25],
                          "loss": [3.0, 2.5, 2.9]})  # fmt: skip
    assert figures_by_step(SimpleNamespace(metrics_dataframe=frame)) == {
        "2": {"dev_accuracy": 0.25}
    }
    once = frame.iloc[:2]
    assert figures_by_step(SimpleNamespace(metrics_dataframe=once)) == {
        "2": {"dev_accuracy": 0.2}, "4": {"dev_accuracy": 0.3}}  # fmt: skip
    # A report without dev figures (a training-loss report) leaves the record as it is.
    mixed = pd.DataFrame({"step": [1, 2, 3], "dev_accuracy": [float("nan"), 0.2, float("nan")]})
    assert figures_by_step(SimpleNamespace(metrics_dataframe=mixed)) == {"2": {"dev_accuracy": 0.2}}


def test_best_under_floors_and_the_pareto_front() -> None:
    rows = [
        {"trial": "a", "dev_accuracy": 0.50, "dev_accuracy_en": 0.70, "dev_accuracy_zh": 0.30},
        {"trial": "b", "dev_accuracy": 0.45, "dev_accuracy_en": 0.50, "dev_accuracy_zh": 0.40},
        {"trial": "c", "dev_accuracy": 0.40, "dev_accuracy_en": 0.45, "dev_accuracy_zh": 0.35},
        {"trial": "d", "dev_accuracy": 0.30, "dev_accuracy_en": 0.20, "dev_accuracy_zh": 0.42},
    ]
    assert choose_best(rows, {}) == (rows[0], True)
    assert choose_best(rows, {"zh": 0.38}) == (rows[1], True)
    assert choose_best(rows, {"zh": 0.9}) == (rows[0], False)  # none meets it: best overall
    front = pareto_front(rows, ["dev_accuracy_en", "dev_accuracy_zh"])
    assert [r["trial"] for r in front] == ["a", "b", "d"]  # c is beaten by b on both
    tune = TuneConfig(languages=["en", "zh"], floors={"zh": 0.38}, baselines=[])
    choice = choose_and_front(list(reversed(rows)), tune)
    assert choice["best"]["trial"] == "b" and choice["best_meets_floors"]
    assert [r["trial"] for r in choice["ranked"]] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("tune.floors={xx: 0.3}", "floors"),
        ("tune.floors={en: 30}", "fractions"),
        ("tune.objectives=per_language", "needs search: optuna"),
        ("tune.baselines=[equal, natural, unimax]", "num_samples"),
        ("tune.baselines=[median]", "baselines"),
        ("tune.scheduler=hyperband", "scheduler"),
    ],
)
def test_bad_optimizer_config_is_refused_naming_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(preset="tiny", overrides=["tune.num_samples=2", override])


def test_outputs_from_synthetic_trials(tmp_path) -> None:
    """Every output file from a synthetic sweep (no Ray): the MixtureSpec loads, the
    report shows the plots, the table ranks every trial."""
    from medbase_ray.prepare.config import load_mixture_spec
    from medbase_ray.stage import StageOutput
    from medbase_ray.tune.outputs import write_outputs

    cfg = load_config(preset="tiny", overrides=["tune.languages=[en, zh, hi]"])
    rows = _synthetic(8, seed=4)
    analysis = fit_and_propose(rows, cfg.tune)
    choice = choose_and_front(rows, cfg.tune)
    summary = {
        "metric": "dev_accuracy", "mode": "max", "floors": {}, "trials": choice["ranked"],
        "best": choice["best"], "best_meets_floors": True, "failed": [],
        "regression": analysis, "proposal": analysis["proposal"], "trial_steps": 32,
        "pareto": [r["trial"] for r in choice["pareto"]],
    }  # fmt: skip
    out = StageOutput(tmp_path / "tune")
    table = write_outputs(out, cfg, summary)
    assert len(table.splitlines()) == 2 + 8
    spec = load_mixture_spec(tmp_path / "tune" / "best_mixture.yaml")
    assert spec.weights == pytest.approx(choice["best"]["shares"]) and spec.by == "language"
    assert load_config(tmp_path / "tune" / "best_config.yaml").mixture == spec
    report = (tmp_path / "tune" / "report.md").read_text()
    for png in ("accuracy_vs_weight.png", "macro_by_trial.png", "pareto.png"):
        assert f"]({png})" in report
        assert (tmp_path / "tune" / png).read_bytes()[:4] == b"\x89PNG"
    assert "Too poor to trust" not in report and "Spearman" in report
