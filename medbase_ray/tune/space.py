"""The sweep's pure core (no Ray): each trial's config and the ranking of trials."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medbase_ray.config import PipelineConfig

WEIGHT_PREFIX = "w_"


def shares(weights: dict[str, float]) -> dict[str, float]:
    """Weights normalised to sum to 1 (the mixture's target share of each language)."""
    total = sum(weights.values())
    if not total > 0:
        raise ValueError(f"mixture weights must have a positive sum, got {weights}")
    return {lang: w / total for lang, w in weights.items()}


def weights_of(params: dict[str, Any]) -> dict[str, float]:
    """{language: weight} from a trial's parameters (`w_en`, `w_zh`, ...)."""
    return {
        k[len(WEIGHT_PREFIX) :]: float(v) for k, v in params.items() if k.startswith(WEIGHT_PREFIX)
    }


def trial_weights(config: dict[str, Any]) -> dict[str, float]:
    """A Tune trial's {language: weight}: grid trials hold them under "mixture"."""
    return weights_of(config.get("mixture", config))


def params_of(weights: dict[str, float]) -> dict[str, float]:
    return {f"{WEIGHT_PREFIX}{lang}": float(w) for lang, w in weights.items()}


def trial_config(cfg: PipelineConfig, weights: dict[str, float], trial_dir: str) -> PipelineConfig:
    """The sweep's config for one trial: its language mixture, a short run in its own
    directory, the dev benchmark scored at the end."""
    trial = cfg.model_copy(deep=True)
    trial.mixture.by = "language"
    trial.mixture.weights = shares(weights)
    trial.mixture.temperature_alpha = None
    trial.train.max_steps = cfg.tune.trial_max_steps
    trial.train.dev_benchmark = True
    trial.train.storage_path = trial_dir
    trial.train.save_steps = None  # the final checkpoint only
    trial.train.keep_last = 1
    return trial


def rank_trials(rows: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    """Trials best first by `metric`; trials without a finite value last."""

    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get(metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return (1, 0.0)
        return (0, -value if mode == "max" else value)

    return sorted(rows, key=key)


def format_table(rows: list[dict[str, Any]], languages: list[str], metric: str) -> str:
    """A Markdown table of the ranked trials: mixture shares, dev accuracy per language."""
    head = ["trial", *[f"{lang} share" for lang in languages], "dev macro %"]
    head += [f"dev {lang} %" for lang in languages] + ["loss"]
    if metric not in ("dev_accuracy", "loss") and not metric.startswith("dev_accuracy_"):
        head.append(metric)
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for row in rows:
        share = row.get("shares", {})
        cells = [str(row.get("trial", "?"))]
        cells += [f"{share.get(lang, 0.0):.2f}" for lang in languages]
        cells.append(_pct(row.get("dev_accuracy")))
        cells += [_pct(row.get(f"dev_accuracy_{lang}")) for lang in languages]
        cells.append(_num(row.get("loss")))
        if len(cells) < len(head):
            cells.append(_num(row.get(metric)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, int | float) else "-"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"
