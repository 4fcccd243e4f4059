"""The sweep's outputs in `<run>/tune/` (pure: no Ray), all through StageOutput:

results.json        every trial (weights, target and realised shares, dev accuracy per
                    language, macro, loss, steps run, stopped early), failed trials,
                    the regression's fits, the proposal, the Pareto front
results.md          the ranked table
best_mixture.yaml   the best mixture (under the floors) as a MixtureSpec
best_config.yaml    the sweep's config with it: `medbase train -c best_config.yaml`
proposal.json       the regression's proposal: shares, predicted and measured figures
pareto.json         the trials no other beats on every searched language
*.png, report.md    the plots and a Markdown report showing them
"""

from __future__ import annotations

import io
import math
from typing import Any

import yaml

from medbase_ray import storage
from medbase_ray.config import PipelineConfig, dump_config
from medbase_ray.stage import StageOutput
from medbase_ray.tune.analysis import accuracy_key
from medbase_ray.tune.space import format_table

PLOTS = {
    "accuracy_vs_weight.png": "Each language's dev accuracy against its own share",
    "macro_by_trial.png": "The objective by trial",
    "pareto.png": "The Pareto front of two languages",
}


def best_mixture_config(cfg: PipelineConfig, best_shares: dict[str, float]) -> PipelineConfig:
    """The sweep's config training on the best mixture (by language, these shares)."""
    best = cfg.model_copy(deep=True)
    best.mixture.by, best.mixture.weights = "language", dict(best_shares)
    best.mixture.temperature_alpha = None
    best.tune.fault_injection = None
    return best


def write_outputs(out: StageOutput, cfg: PipelineConfig, summary: dict[str, Any]) -> str:
    """Write every output file; returns the ranked table (Markdown)."""
    t = cfg.tune
    table = format_table(summary["trials"], t.languages, t.metric)
    best_cfg = best_mixture_config(cfg, summary["best"]["shares"])
    out.write_json(summary | {"table": table}, "results.json")
    out.write_text(table + "\n", "results.md")
    mixture = best_cfg.mixture.model_dump(mode="json")
    out.write_text(
        yaml.safe_dump(mixture, sort_keys=False, allow_unicode=True), "best_mixture.yaml"
    )
    out.write_text(dump_config(best_cfg), "best_config.yaml")
    out.write_json(summary["proposal"], "proposal.json")
    pareto = [r for r in summary["trials"] if r["trial"] in set(summary["pareto"])]
    out.write_json(pareto, "pareto.json")
    for name, png in render_plots(summary, t.languages, t.metric).items():
        storage.write_bytes(out.child(name), png)
    out.write_text(markdown_report(summary, table), "report.md")
    return table


def render_plots(summary: dict[str, Any], languages: list[str], metric: str) -> dict[str, bytes]:
    """{file name: PNG bytes} of the three plots."""
    # Imported here: matplotlib (with the Agg backend, no display) is only for the plots.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = summary["trials"]
    fits = (summary.get("regression") or {}).get("fits") or {}
    pngs = {}

    cols = min(3, len(languages))
    rows_n = math.ceil(len(languages) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.2 * rows_n), squeeze=False)
    for ax, lang in zip(axes.flat, languages, strict=False):
        key = accuracy_key(lang)
        pts = [(r["shares"].get(lang, 0.0), r[key]) for r in trials if _num(r.get(key))]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, [100 * y for y in ys], label="trials")
        curve = (summary.get("regression") or {}).get("curves", {}).get(lang)
        if curve:
            model = fits[key]["model"]
            ax.plot(
                *zip(*[(c, 100 * a) for c, a in curve], strict=True), "--", label=f"{model} fit"
            )
        ax.set(title=f"{lang}", xlabel=f"{lang} share", ylabel="dev accuracy %", xlim=(0, 1))
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(languages) :]:
        ax.set_visible(False)
    fig.tight_layout()
    pngs["accuracy_vs_weight.png"] = _png(fig, plt)

    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(trials)), 3.5))
    order = sorted(trials, key=lambda r: r["trial"])
    values = [
        100 * r[metric] if _num(r.get(metric)) and "accuracy" in metric else r.get(metric) or 0
        for r in order
    ]
    colors = ["tab:red" if r.get("origin") == "proposal" else "tab:blue" for r in order]
    ax.bar(range(len(order)), values, color=colors)
    ax.set_xticks(
        range(len(order)), [f"{r['origin']}\n{r['trial'][-5:]}" for r in order], fontsize=7
    )
    ax.set(
        ylabel=metric + (" %" if "accuracy" in metric else ""),
        title=f"{metric} by trial (red: proposal)",
    )
    fig.tight_layout()
    pngs["macro_by_trial.png"] = _png(fig, plt)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    a, b = (languages + languages)[:2]
    front = set(summary["pareto"])
    for r in trials:
        if _num(r.get(accuracy_key(a))) and _num(r.get(accuracy_key(b))):
            on = r["trial"] in front
            ax.scatter(100 * r[accuracy_key(a)], 100 * r[accuracy_key(b)],
                       c="tab:red" if on else "tab:gray", marker="o" if on else "x")  # fmt: skip
    ax.set(xlabel=f"dev {a} %", ylabel=f"dev {b} %",
           title=f"Pareto front over {len(languages)} languages (red), shown for {a}/{b}")  # fmt: skip
    ax.title.set_fontsize(8)
    fig.tight_layout()
    pngs["pareto.png"] = _png(fig, plt)
    return pngs


def markdown_report(summary: dict[str, Any], table: str) -> str:
    """The report: the table, the proposal against the best trial, the fit's quality,
    the Pareto front and the plots."""
    best, reg, proposal = summary["best"], summary.get("regression") or {}, summary.get("proposal")
    lines = [
        "# Mixture sweep",
        "",
        f"Objective: `{summary['metric']}` ({summary['mode']}); floors: {summary['floors'] or 'none'}; "
        f"{len(summary['trials'])} trials finished, {len(summary['failed'])} failed, "
        f"{summary['trial_steps']} trial-steps in all.",
        "",
        f"**Best mixture**: trial `{best['trial']}` ({best['origin']}): "
        + ", ".join(f"{k} {v:.2f}" for k, v in best["shares"].items())
        + f" — {summary['metric']} {_fmt(best.get(summary['metric']))}"
        + (
            "" if summary["best_meets_floors"] else " (**no trial meets the floors**: best overall)"
        ),
        "(`best_mixture.yaml`; `medbase train -c best_config.yaml` trains on it).",
        "",
        "## Trials",
        "",
        table,
        "",
    ]
    if summary["failed"]:
        lines += ["Failed trials: " + ", ".join(f"`{f['trial']}`" for f in summary["failed"]), ""]
    lines += ["## Regression and proposal", ""]
    if proposal is None:
        lines += [f"No proposal: {reg.get('why_not') or 'proposal disabled'}.", ""]
    else:
        fit = reg["fits"][summary["metric"]]
        lines += [
            f"Fitted on {reg['n_trials']} trials' figures at step {reg.get('fit_step', '?')}"
            + (
                " (ASHA's first rung: fewer than 3 trials ran every step)"
                if reg.get("fit_step") not in (None, summary.get("trial_max_steps"))
                else ""
            )
            + f"; `{summary['metric']}` by the {fit['model']} model, "
            f"leave-one-out Spearman {_fmt(fit['loo_spearman'], 2)}."
            + ("" if reg["trusted"] else f" **Too poor to trust**: {reg['why_not']}."),
            "",
            "Proposed mixture: " + ", ".join(f"{k} {v:.2f}" for k, v in proposal["shares"].items()),
            "",
            "| figure | predicted | measured |",
            "| --- | ---: | ---: |",
        ]
        for name, pm in (proposal.get("measured") or {}).items():
            lines.append(f"| {name} | {_fmt(pm['predicted'])} | {_fmt(pm['measured'])} |")
        lines.append("")
    lines += [
        "## Pareto front",
        "",
        "Trials no other trial beats on every searched language: "
        + ", ".join(f"`{t}`" for t in summary["pareto"]),
        "",
    ]
    for name, title in PLOTS.items():
        lines += [f"![{title}]({name})", ""]
    return "\n".join(lines)


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if _num(value) else "-"
