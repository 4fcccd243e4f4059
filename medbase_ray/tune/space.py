"""The sweep's pure core (no Ray): each trial's config and the ranking of trials."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from medbase_ray.config import PipelineConfig
from medbase_ray.tune.config import trial_grad_accum

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
    workers = cfg.tune.trial_num_workers or cfg.train.num_workers
    # The same global batch on fewer (or more) workers: each worker accumulates more.
    trial.train.grad_accum_steps = trial_grad_accum(cfg.train, workers)
    trial.train.num_workers = workers
    trial.train.dev_benchmark = True
    # Every report carries the dev figures (Tune's searchers and schedulers read them
    # from each one), so reports come only at the evaluation points.
    trial.train.eval_steps = cfg.tune.eval_steps or cfg.tune.trial_max_steps
    trial.train.log_steps = trial.train.eval_steps
    trial.train.storage_path = trial_dir
    trial.train.save_steps = None  # the final checkpoint only
    trial.train.keep_last = 1
    return trial


def trial_tokens(cfg: PipelineConfig) -> int:
    """Token slots one trial trains on (steps x global batch x seq_len): UniMax's budget."""
    t = cfg.train
    rows = t.micro_batch_size * t.grad_accum_steps * t.num_workers
    return cfg.tune.trial_max_steps * rows * cfg.prepare.seq_len


def token_shares(rows: pa.Table) -> dict[str, float]:
    """Each language's share of the real tokens of packed rows (what a trial trained on)."""
    totals: dict[str, float] = {}
    for lang, n in zip(
        rows["language"].to_pylist(), rows["n_real_tokens"].to_pylist(), strict=True
    ):
        totals[lang] = totals.get(lang, 0.0) + n
    total = sum(totals.values())
    return {lang: n / total for lang, n in sorted(totals.items())} if total else {}


def rank_trials(rows: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    """Trials best first by `metric`; trials without a finite value last."""

    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get(metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return (1, 0.0)
        return (0, -value if mode == "max" else value)

    return sorted(rows, key=key)


def format_table(rows: list[dict[str, Any]], languages: list[str], metric: str) -> str:
    """A Markdown table of the ranked trials: where each mixture came from, its target
    (and realised) share of each language, dev accuracy per language, the last loss,
    the steps it ran and whether the scheduler stopped it early."""
    head = ["trial", "origin", *[f"{lang} share" for lang in languages], "dev macro %"]
    head += [f"dev {lang} %" for lang in languages] + ["loss", "steps", "stopped early"]
    if metric not in ("dev_accuracy", "loss") and not metric.startswith("dev_accuracy_"):
        head.append(metric)
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for row in rows:
        share, realised = row.get("shares", {}), row.get("realised_shares") or {}
        cells = [str(row.get("trial", "?")), str(row.get("origin", "-"))]
        for lang in languages:
            cell = f"{share.get(lang, 0.0):.2f}"
            cells.append(f"{cell} ({realised[lang]:.2f})" if lang in realised else cell)
        cells.append(_pct(row.get("dev_accuracy")))
        cells += [_pct(row.get(f"dev_accuracy_{lang}")) for lang in languages]
        cells += [
            _num(row.get("loss")),
            _num(row.get("step")),
            "yes" if row.get("stopped_early") else "no",
        ]
        if len(cells) < len(head):
            cells.append(_num(row.get(metric)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, int | float) else "-"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"
