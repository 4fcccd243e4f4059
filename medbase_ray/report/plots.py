"""The report's figures: matplotlib (Agg, no display) drawn to PNG, returned as a
`data:` URI so the HTML needs no other file and no network.

Each `plot_*` takes plain data (lists and dicts from the run's outputs) and returns the
data URI; the report decides whether there is anything to plot.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only (before pyplot is imported)
import matplotlib.pyplot as plt  # noqa: E402

BEFORE_COLOR, AFTER_COLOR = "#9aa5b1", "#1f6feb"
FIG_DPI = 110


def _to_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_training_curves(metrics: list[dict[str, float]]) -> str:
    """Loss (and dev loss where reported) and the learning rate against the step."""
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(9, 3.2))
    steps = [m["step"] for m in metrics if "loss" in m]
    ax_loss.plot(steps, [m["loss"] for m in metrics if "loss" in m], label="train loss")
    dev = [(m["step"], m["dev_loss"]) for m in metrics if "dev_loss" in m]
    if dev:
        ax_loss.plot(*zip(*dev, strict=True), "o-", label="dev loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (nats / token)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    lr = [(m["step"], m["lr"]) for m in metrics if "lr" in m]
    if lr:
        ax_lr.plot(*zip(*lr, strict=True), color="#d97706")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    return _to_data_uri(fig)


def plot_accuracy(evals: dict[str, dict[str, Any]], chance: float | None = None) -> str:
    """Accuracy per language, one bar per eval (e.g. untrained, trained), with the 95%
    bootstrap interval as the error bar."""
    names = list(evals)
    languages = list(next(iter(evals.values()))["accuracy"]["languages"])
    width = 0.8 / len(names)
    colors = [BEFORE_COLOR, AFTER_COLOR] if len(names) == 2 else [None] * len(names)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for i, name in enumerate(names):
        per_lang = evals[name]["accuracy"]["languages"]
        acc = [100 * per_lang.get(lang, {}).get("accuracy", 0.0) for lang in languages]
        ci = [per_lang.get(lang, {}).get("ci95") or [a / 100, a / 100] for lang, a in
              zip(languages, acc, strict=True)]  # fmt: skip
        err = [
            [a - 100 * lo for a, (lo, _) in zip(acc, ci, strict=True)],
            [100 * hi - a for a, (_, hi) in zip(acc, ci, strict=True)],
        ]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(languages))]
        ax.bar(xs, acc, width, yerr=err, capsize=3, label=name, color=colors[i])
    if chance is not None:
        ax.axhline(100 * chance, color="#b91c1c", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(languages)), languages)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(ncol=len(names) + 1, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _to_data_uri(fig)


def plot_tune_trials(trials: list[dict[str, Any]], metric: str, languages: list[str]) -> str:
    """Each trial's language shares (stacked) and its score (annotated above)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    labels = [str(t.get("origin") or t.get("trial", i)) for i, t in enumerate(trials)]
    bottom = [0.0] * len(trials)
    for lang in languages:
        share = [t.get("shares", {}).get(lang, 0.0) for t in trials]
        ax.bar(range(len(trials)), share, bottom=bottom, label=lang)
        bottom = [b + s for b, s in zip(bottom, share, strict=True)]
    for x, t in enumerate(trials):
        value = t.get(metric)
        if isinstance(value, int | float):
            ax.annotate(f"{value:.3f}", (x, 1.02), ha="center", fontsize=9)
    # positions, not labels, on the axis: two trials may share an origin ("random")
    ax.set_xticks(range(len(trials)), labels)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("language share")
    ax.set_title(f"trials, best first ({metric} above each)", fontsize=10)
    ax.legend(ncol=len(languages), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    return _to_data_uri(fig)


def plot_tokens(per_group: dict[str, dict[str, float]], title: str) -> str:
    """Real tokens and padding per group (language or source), as stacked bars."""
    fig, ax = plt.subplots(figsize=(9, 3.0))
    names = list(per_group)
    real = [per_group[n]["real_tokens"] for n in names]
    padding = [per_group[n]["padding_tokens"] for n in names]
    ax.bar(names, real, label="real tokens", color=AFTER_COLOR)
    ax.bar(names, padding, bottom=real, label="padding", color="#f0b429")
    ax.set_ylabel("tokens")
    ax.set_title(title, fontsize=10)
    ax.legend(ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)
    ax.tick_params(axis="x", labelrotation=30 if len(names) > 8 else 0, labelsize=8)
    fig.tight_layout()
    return _to_data_uri(fig)
