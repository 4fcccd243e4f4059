"""What a finished sweep means (pure: no Ray): the fits from mixture to accuracy, the
proposal, the best trial under the floors and the Pareto front across languages.

    analysis = analyse_trials(rows, cfg.tune)        # rows: finished trials, any order
    analysis["proposal"]["shares"]                   # the mixture to train as a last trial
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medbase_ray.tune.config import TuneConfig
from medbase_ray.tune.regression import (
    choose_best,
    fit_targets,
    is_trustworthy,
    linear_coefficients,
    pareto_front,
    propose_mixture,
)
from medbase_ray.tune.space import rank_trials

MIN_TRIALS_TO_FIT = 3


def accuracy_key(lang: str) -> str:
    return f"dev_accuracy_{lang}"


def targets_of(tune: TuneConfig) -> list[str]:
    """What the regression predicts: each searched language's dev accuracy, and the
    metric itself when it is not one of them (the macro covers every language)."""
    per_language = [accuracy_key(lang) for lang in tune.languages]
    return per_language + ([tune.metric] if tune.metric not in per_language else [])


def fit_inputs(
    rows: list[dict[str, Any]], tune: TuneConfig
) -> tuple[list[dict[str, Any]], np.ndarray, dict[str, np.ndarray], int]:
    """(rows used, X = their shares, {target: y}, the training step of the figures).

    The trials that ran every step and reported every target (one stopped early was
    measured at another point). When ASHA stopped so many that fewer than
    MIN_TRIALS_TO_FIT ran every step, the figures every trial reported at ASHA's first
    rung (`grace_period_steps`) instead: one budget for all, and no trial left out for
    having been stopped (fitting on the survivors alone would also see only the best)."""
    sweep = [r for r in rows if r.get("origin") != "proposal"]
    targets = targets_of(tune)
    full = [
        r for r in sweep if not r.get("stopped_early") and all(_finite(r.get(t)) for t in targets)
    ]
    used, step = full, tune.trial_max_steps
    if len(full) < MIN_TRIALS_TO_FIT and tune.scheduler == "asha":
        rung = str(tune.grace_period_steps)
        at_rung = [
            r | r["by_step"][rung]
            for r in sweep
            if rung in r.get("by_step", {})
            and all(_finite(r["by_step"][rung].get(t)) for t in targets)
        ]
        if len(at_rung) > len(full):
            used, step = at_rung, tune.grace_period_steps
    x = np.array([[r["shares"].get(lang, 0.0) for lang in tune.languages] for r in used])
    y = {t: np.array([r[t] for r in used], dtype=float) for t in targets}
    return used, x, y, step


def fit_and_propose(rows: list[dict[str, Any]], tune: TuneConfig) -> dict[str, Any]:
    """The regression over the finished trials and the mixture it proposes.

    Returns {"n_trials", "fits": {target: summary}, "own_weight_coefficients",
    "proposal": {"shares", "predicted", ...} or None, "trusted", "why_not"}.
    """
    used, x, y, step = fit_inputs(rows, tune)
    out: dict[str, Any] = {"n_trials": len(used), "fit_step": step, "fits": {}, "proposal": None}
    if len(used) < MIN_TRIALS_TO_FIT:
        out |= {"trusted": False, "why_not": f"only {len(used)} finished trials to fit"}
        return out
    fits = fit_targets(x, y, tune.languages, tune.seed)
    out["fits"] = {name: fit.summary() for name, fit in fits.items()}
    # The linear model's coefficient of a language's own share on its own accuracy:
    # positive when giving a language more weight helps it (the wiring means something).
    out["own_weight_coefficients"] = {
        lang: linear_coefficients(x, y[accuracy_key(lang)], tune.languages)[lang]
        for lang in tune.languages
    }
    trusted, why_not = is_trustworthy(len(used), fits[tune.metric].loo_spearman)
    out |= {"trusted": trusted, "why_not": why_not}
    out["proposal"] = propose_mixture(
        fits,
        x,
        tune.languages,
        tune.metric,
        tune.floors,
        tune.mode,
        tune.proposal_candidates,
        tune.proposal_top_k,
        tune.seed,
    ) | {"fit_step": step}
    out["curves"] = {
        lang: own_weight_curve(fits[accuracy_key(lang)], x, i)
        for i, lang in enumerate(tune.languages)
    }
    out["loo_predictions"] = {
        r["trial"]: {name: fit.loo_predictions[i] for name, fit in fits.items()}
        for i, r in enumerate(used)
    }
    return out


def own_weight_curve(fit, x: np.ndarray, i: int, points: int = 25) -> list[list[float]]:
    """[[share, predicted accuracy]] of language i over the share range the trials span,
    the other languages keeping their mean proportions (the plot's fitted curve)."""
    rest = np.delete(x.mean(axis=0), i)
    rest = rest / rest.sum() if rest.sum() > 0 else np.full(len(rest), 1 / max(len(rest), 1))
    curve = []
    for share in np.linspace(x[:, i].min(), x[:, i].max(), points):
        point = np.insert(rest * (1 - share), i, share)
        curve.append([float(share), float(fit.predict(point)[0])])
    return curve


def choose_and_front(rows: list[dict[str, Any]], tune: TuneConfig) -> dict[str, Any]:
    """The ranked trials, the best under the floors, and the Pareto front across the
    searched languages' dev accuracies."""
    ranked = rank_trials(rows, tune.metric, tune.mode)
    best, meets = choose_best(ranked, tune.floors)
    front = pareto_front(ranked, [accuracy_key(lang) for lang in tune.languages])
    return {"ranked": ranked, "best": best, "best_meets_floors": meets, "pareto": front}


def measured_against_predicted(proposal_row: dict[str, Any], predicted: dict[str, float]) -> dict:
    """{target: {"predicted", "measured"}} for the proposal's final trial."""
    return {
        name: {"predicted": value, "measured": proposal_row.get(name)}
        for name, value in predicted.items()
    }


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
