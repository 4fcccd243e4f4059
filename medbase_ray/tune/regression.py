"""From finished trials to a proposed mixture, as RegMix does (Liu et al. 2024), plus
the choice under floors and the Pareto front (pure: numpy and scikit-learn, no Ray).

    fits = fit_targets(X, {"dev_accuracy_en": y_en, ...})      # X: trials x languages
    proposal = propose_mixture(fits, languages, objective, floors, mode, n, top_k, seed)

Each target (a language's dev accuracy, the objective) gets a linear model and a small
gradient-boosted one; the one with the lower leave-one-out squared error is kept, and
its leave-one-out predictions give a Spearman rank correlation with the measured
values: how far the fit can be trusted to rank mixtures it has not seen. The proposal
searches thousands of mixtures on the simplex with the fitted models and averages the
top_k that meet the floors (RegMix averages its top 100 rather than taking a single,
noisier arg-max). The candidates are random convex combinations of the trials'
mixtures: the region the trials cover, where a fit interpolates (a linear fit
extrapolated to the simplex's corners would always propose a single language).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge

# Below these the report says the fit is too poor to trust.
MIN_TRIALS_TO_TRUST = 5
MIN_SPEARMAN_TO_TRUST = 0.3


def _model(kind: str, seed: int):
    if kind == "linear":
        # A touch of ridge: the shares sum to 1, so plain least squares is ill-posed.
        return Ridge(alpha=1e-3)
    # Small and shallow: a few dozen trials at most.
    return GradientBoostingRegressor(
        n_estimators=60, max_depth=2, learning_rate=0.1, min_samples_leaf=1, random_state=seed
    )


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); nan when either is constant."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):  # ties share their average rank
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


@dataclass
class TargetFit:
    """The chosen model of one target and how well it predicts unseen trials."""

    target: str
    kind: str  # "linear" or "boosted"
    model: Any
    loo_mse: dict[str, float]  # per kind
    loo_spearman: float  # of the chosen kind
    loo_predictions: list[float]
    coefficients: dict[str, float] = field(default_factory=dict)  # linear only

    def predict(self, shares: np.ndarray) -> np.ndarray:
        return self.model.predict(np.atleast_2d(shares))

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.kind,
            "loo_mse": self.loo_mse,
            "loo_spearman": self.loo_spearman,
            "coefficients": self.coefficients,
        }


def fit_target(
    x: np.ndarray, y: np.ndarray, target: str, languages: list[str], seed: int = 0
) -> TargetFit:
    """Fit both kinds on (x, y), keep the one with the lower leave-one-out error."""
    n = len(y)
    if n < 3:
        raise ValueError(f"{target}: a regression needs at least 3 finished trials, got {n}")
    loo: dict[str, np.ndarray] = {}
    for kind in ("linear", "boosted"):
        predictions = np.empty(n)
        for i in range(n):
            keep = np.arange(n) != i
            predictions[i] = _model(kind, seed).fit(x[keep], y[keep]).predict(x[i : i + 1])[0]
        loo[kind] = predictions
    mse = {kind: float(np.mean((p - y) ** 2)) for kind, p in loo.items()}
    kind = min(mse, key=lambda k: (mse[k], k != "linear"))  # a tie goes to the simpler one
    model = _model(kind, seed).fit(x, y)
    coefficients = (
        {lang: float(c) for lang, c in zip(languages, model.coef_, strict=True)}
        if kind == "linear"
        else {}
    )
    return TargetFit(
        target, kind, model, mse, spearman(loo[kind], y), loo[kind].tolist(), coefficients
    )


def linear_coefficients(x: np.ndarray, y: np.ndarray, languages: list[str]) -> dict[str, float]:
    """The linear model's coefficient of each language's share (whichever model is kept)."""
    model = _model("linear", 0).fit(x, y)
    return {lang: float(c) for lang, c in zip(languages, model.coef_, strict=True)}


def fit_targets(
    x: np.ndarray, targets: dict[str, np.ndarray], languages: list[str], seed: int = 0
) -> dict[str, TargetFit]:
    return {name: fit_target(x, y, name, languages, seed) for name, y in targets.items()}


def is_trustworthy(n_trials: int, loo_spearman: float) -> tuple[bool, str]:
    """(trust it?, why not) for the objective's fit."""
    if n_trials < MIN_TRIALS_TO_TRUST:
        return False, f"only {n_trials} finished trials (fewer than {MIN_TRIALS_TO_TRUST})"
    if not math.isfinite(loo_spearman):
        return False, "the leave-one-out predictions do not rank the trials (constant)"
    if loo_spearman < MIN_SPEARMAN_TO_TRUST:
        return False, (
            f"leave-one-out Spearman {loo_spearman:.2f} is below {MIN_SPEARMAN_TO_TRUST}"
            + (" (negative: worse than no model)" if loo_spearman < 0 else "")
        )
    return True, ""


def objective_values(
    predicted: dict[str, np.ndarray], objective: str, languages: list[str]
) -> np.ndarray:
    """The objective of each candidate: its own fit when there is one, else (the macro
    `dev_accuracy`) the mean of the languages' predictions."""
    if objective in predicted:
        return predicted[objective]
    return np.mean([predicted[f"dev_accuracy_{lang}"] for lang in languages], axis=0)


def propose_mixture(
    fits: dict[str, TargetFit],
    trial_shares: np.ndarray,
    languages: list[str],
    objective: str,
    floors: dict[str, float],
    mode: str = "max",
    n_candidates: int = 20_000,
    top_k: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """The mixture the fitted models predict best under the floors, among convex
    combinations of `trial_shares` (trials x languages).

    Returns {"shares", "predicted": {target: value}, "candidates", "feasible"}; when no
    candidate meets the floors, the one that misses them by the least is taken
    ("feasible": 0).
    """
    rng = np.random.default_rng(seed)
    # Dirichlet(0.5) weights over the trials: many candidates near one trial or between
    # two, as well as blends of all of them.
    blend = rng.dirichlet(np.full(len(trial_shares), 0.5), size=n_candidates)
    candidates = blend @ trial_shares
    predicted = {name: fit.predict(candidates) for name, fit in fits.items()}
    score = objective_values(predicted, objective, languages)
    score = score if mode == "max" else -score
    shortfall = np.zeros(n_candidates)
    for lang, floor in floors.items():
        shortfall += np.clip(floor - predicted[f"dev_accuracy_{lang}"], 0, None)
    feasible = shortfall <= 0
    if feasible.any():
        order = np.argsort(np.where(feasible, -score, np.inf), kind="stable")
        chosen = order[: min(top_k, int(feasible.sum()))]
    else:
        chosen = np.argsort(shortfall, kind="stable")[:1]
    shares = candidates[chosen].mean(axis=0)
    shares = shares / shares.sum()
    at = {name: float(fit.predict(shares)[0]) for name, fit in fits.items()}
    at_arrays = {name: np.array([v]) for name, v in at.items()}
    at.setdefault(objective, float(objective_values(at_arrays, objective, languages)[0]))
    return {
        "shares": {lang: float(s) for lang, s in zip(languages, shares, strict=True)},
        "predicted": at,
        "candidates": n_candidates,
        "feasible": int(feasible.sum()),
    }


def meets_floors(row: dict[str, Any], floors: dict[str, float]) -> bool:
    return all(
        isinstance(row.get(f"dev_accuracy_{lang}"), int | float)
        and row[f"dev_accuracy_{lang}"] >= floor
        for lang, floor in floors.items()
    )


def choose_best(
    ranked: list[dict[str, Any]], floors: dict[str, float]
) -> tuple[dict[str, Any], bool]:
    """(the best ranked trial meeting the floors, True), else (the best trial, False)."""
    for row in ranked:
        if meets_floors(row, floors):
            return row, True
    return ranked[0], not floors


def pareto_front(rows: list[dict[str, Any]], objectives: list[str]) -> list[dict[str, Any]]:
    """The rows no other row dominates (at least as good on every objective, better on
    one; all maximised); rows missing an objective are left out."""
    scored = [
        r
        for r in rows
        if all(isinstance(r.get(o), int | float) and math.isfinite(r[o]) for o in objectives)
    ]
    values = np.array([[r[o] for o in objectives] for r in scored], dtype=float)
    front = []
    for i, row in enumerate(scored):
        others = np.delete(values, i, axis=0)
        dominated = np.any(np.all(others >= values[i], axis=1) & np.any(others > values[i], axis=1))
        if not dominated:
            front.append(row)
    return front
