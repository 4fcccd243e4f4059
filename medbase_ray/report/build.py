"""One self-contained HTML report of a run directory (`<run>/report.html`).

    medbase report runs/tiny           # any run directory, whatever stages it holds
    from medbase_ray.report.build import write_report

Sections (each a `<section id=...>`, present even when its stage is not in the run):
data (rewrite in/out/rejects; records, tokens and padding per language and source),
training (loss and learning-rate curves), tune (trials, the chosen mixture), accuracy
(per language before/after with 95% intervals), commands (the command line, seconds per
stage, the resolved config). Figures are PNGs embedded as data URIs: no network.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from medbase_ray import storage
from medbase_ray.report.collect import RunFacts, collect_run, config_of
from medbase_ray.report.plots import (
    plot_accuracy,
    plot_tokens,
    plot_training_curves,
    plot_tune_trials,
)
from medbase_ray.stage import StageOutput

REPORT_FILE = "report.html"
SECTIONS = ("data", "training", "tune", "accuracy", "commands")
CHANCE = 0.25  # the bundled benchmark's items have four options

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #1f2328; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #d0d7de; padding: 2px 8px; }
th { background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img.figure { max-width: 100%; display: block; margin: 0.6em 0; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; font-size: 12px; }
.headline { font-size: 1.1em; background: #f6f8fa; padding: 0.5em 0.8em; border-radius: 6px; }
.muted { color: #656d76; } .good { color: #1a7f37; } .bad { color: #cf222e; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_esc(c)}</td>' if i >= numeric_from else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(name: str, data_uri: str, alt: str) -> str:
    return f'<img class="figure" data-figure="{name}" alt="{_esc(alt)}" src="{data_uri}">'


def _absent(what: str) -> str:
    return f'<p class="muted">No {_esc(what)} in this run.</p>'


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


# -- sections ---------------------------------------------------------------------------
def token_groups(manifest: dict[str, Any], by: str) -> dict[str, dict[str, float]]:
    """Records (samples), rows, real and padding tokens per language or per source."""
    seq_len = manifest["seq_len"]
    groups: dict[str, dict[str, float]] = {}
    for key, s in sorted(manifest["sources"].items()):
        name = s["language"] if by == "language" else key
        g = groups.setdefault(name, dict.fromkeys(("records", "rows", "real_tokens", "padding_tokens", "rejected"), 0))  # fmt: skip
        g["records"] += s["samples"]
        g["rows"] += s["rows"]
        g["real_tokens"] += s["real_tokens"]
        g["padding_tokens"] += s["rows"] * seq_len - s["real_tokens"]
        g["rejected"] += s.get("rejected", 0)
    return groups


def _token_table(groups: dict[str, dict[str, float]], first: str) -> str:
    rows = []
    for name, g in groups.items():
        total = g["real_tokens"] + g["padding_tokens"]
        pad = g["padding_tokens"] / total if total else 0.0
        rows.append(
            [name, int(g["records"]), int(g["rows"]), int(g["real_tokens"]), f"{100 * pad:.1f}%",
             int(g["rejected"])]
        )  # fmt: skip
    return _table([first, "records", "rows", "real tokens", "padding", "rejected"], rows)


def section_data(facts: RunFacts) -> str:
    parts = ["<h3>Rewrite (teacher back-translation)</h3>"]
    rw = facts.rewrite
    if rw:
        parts.append(
            _table(
                ["passages read", "items in", "records out", "rejected"],
                [[rw.get("rows_read", "?"), rw["in"], rw["out"], rw["rejected"]]],
                numeric_from=0,
            )
        )
        reasons = rw.get("rejected_by_reason") or {}
        if reasons:
            parts.append(_table(["reject reason", "items"], [[k, v] for k, v in reasons.items()]))
        by_task = rw.get("by_task") or {}
        if by_task:
            parts.append(
                _table(
                    ["task", "out", "rejected"],
                    [[t, c["out"], c["rejected"]] for t, c in by_task.items()],
                )
            )
    else:
        parts.append(_absent("rewrite stage"))
    parts.append("<h3>Clean (decontamination, deduplication)</h3>")
    total = (facts.clean or {}).get("total")
    if total:
        parts.append(_table(list(total), [list(total.values())], numeric_from=0))
    else:
        parts.append(_absent("clean stage"))
    parts.append("<h3>Prepared data (packed rows)</h3>")
    m = facts.manifest
    if m:
        by_lang = token_groups(m, "language")
        by_source = token_groups(m, "source")
        parts.append(
            f"<p>{_esc(m.get('packing'))} packing into rows of {m['seq_len']} tokens, "
            f"chat format {_esc(m.get('chat_format'))}, tokenizer "
            f"{_esc((m.get('tokenizer') or {}).get('name_or_path'))}.</p>"
        )
        parts.append(_token_table(by_lang, "language"))
        parts.append(_figure("tokens-by-language", plot_tokens(by_lang, "tokens per language"),
                             "real tokens and padding per language"))  # fmt: skip
        parts.append(f"<details><summary>per source ({len(by_source)})</summary>")
        parts.append(_token_table(by_source, "source") + "</details>")
    else:
        parts.append(_absent("prepared data"))
    return "".join(parts)


def section_training(facts: RunFacts) -> str:
    metrics = facts.train_metrics or (facts.train or {}).get("metrics") or []
    if not metrics:
        return _absent("training run")
    train = facts.train or {}
    final = train.get("final") or metrics[-1]
    figures = [
        ["steps", train.get("steps", int(metrics[-1]["step"]))],
        ["first loss", f"{metrics[0].get('loss', float('nan')):.3f}"],
        ["final loss", f"{final.get('loss', float('nan')):.3f}"],
        ["peak lr", f"{max(m.get('lr', 0.0) for m in metrics):.2e}"],
    ]
    shares = (train.get("mixture") or {}).get("language_shares")
    text = _table(["", "value"], figures)
    if shares:
        text += "<p>Realised language shares: " + _esc(
            ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
        ) + "</p>"  # fmt: skip
    return text + _figure(
        "training-curves", plot_training_curves(metrics), "loss and learning rate by step"
    )


def section_tune(facts: RunFacts) -> str:
    t = facts.tune
    if not t:
        return _absent("tune sweep")
    metric = t["metric"]
    trials = t["trials"]
    languages = sorted({lang for tr in trials for lang in tr.get("shares", {})})
    rows = []
    for tr in trials:
        mix = ", ".join(f"{k} {v:.2f}" for k, v in tr.get("shares", {}).items())
        value = tr.get(metric)
        rows.append(
            [tr.get("trial"), tr.get("origin", ""), mix,
             f"{value:.3f}" if isinstance(value, int | float) else "-",
             f"{tr.get('loss', float('nan')):.3f}"]
        )  # fmt: skip
    best = ", ".join(f"{k} {v:.2f}" for k, v in t["best"].get("shares", {}).items())
    failed = t.get("failed") or []
    failures = ""
    if failed:  # the error's last line says what went wrong; the rest is in the Tune logs
        failures = _table(
            ["failed trial", "origin", "error"],
            [[f.get("trial"), f.get("origin", ""), _last_line(f.get("error"))] for f in failed],
            numeric_from=3,
        )
    return (
        f"<p>Ranked by {_esc(metric)} ({_esc(t.get('mode'))}). Chosen mixture: "
        f"<b>{_esc(best)}</b>."
        + (f' <span class="bad">{len(failed)} trial(s) failed.</span>' if failed else "")
        + "</p>"
        + _table(["trial", "origin", "language shares", metric, "final loss"], rows, numeric_from=3)
        + failures
        + _figure(
            "tune-trials",
            plot_tune_trials(trials, metric, languages),
            "language shares and score of each trial",
        )  # fmt: skip
    )


def _last_line(text: str | None) -> str:
    """What an error says: its last `...Error: ...` line and the two after it (a
    pydantic error names the field there), else the last line."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    named = [i for i, line in enumerate(lines) if re.match(r"^[\w.]*(Error|Exception)\b", line)]
    shown = lines[named[-1] : named[-1] + 3] if named else lines[-1:]
    return " ".join(shown)[:300]


def section_accuracy(facts: RunFacts) -> str:
    evals = facts.evals
    if not evals:
        return _absent("evaluation")
    names = list(evals)
    languages = list(next(iter(evals.values()))["accuracy"]["languages"])
    header = ["language"] + [f"{n} % [95% CI]" for n in names]
    if len(names) == 2:
        header.append("gain (points)")
    rows = []
    for lang in [*languages, "macro"]:
        row: list[Any] = [lang]
        accs = []
        for n in names:
            acc = evals[n]["accuracy"]
            entry = acc["macro_average"] if lang == "macro" else acc["languages"].get(lang, {})
            a, ci = entry.get("accuracy"), entry.get("ci95")
            accs.append(a)
            shown = "-" if a is None else _pct(a)
            if ci:
                shown += f" [{_pct(ci[0])}, {_pct(ci[1])}]"
            row.append(shown)
        if len(names) == 2 and None not in accs:
            row.append(f"{100 * (accs[1] - accs[0]):+.1f}")
        rows.append(row)
    run = next(iter(evals.values())).get("run", {})
    about = (
        f"<p>{_esc(run.get('mode'))} scoring, {_esc(run.get('k_shot'))}-shot, "
        f"{next(iter(evals.values()))['items']} items of {_esc(run.get('benchmark'))}; "
        "models: " + _esc("; ".join(f"{n}: {evals[n].get('run', {}).get('model')}" for n in names))
        + "</p>"
    )  # fmt: skip
    return (
        about
        + _table(header, rows)
        + _figure("accuracy", plot_accuracy(evals, CHANCE), "accuracy per language")
    )


def section_commands(facts: RunFacts) -> str:
    parts = []
    demo = facts.demo
    if demo:
        parts.append(f"<p>Made by <code>{_esc(demo.get('command'))}</code> in "
                     f"{demo.get('total_s')} s.</p>")  # fmt: skip
        seconds = demo.get("stage_seconds") or {}
        if seconds:
            parts.append(_table(["stage", "seconds"], [[k, v] for k, v in seconds.items()]))
        if demo.get("endpoint"):
            parts.append(f"<p>Endpoint: <code>{_esc(demo['endpoint'])}</code></p>")
    root, _, name = facts.run_dir.rstrip("/").rpartition("/")
    again = [f"medbase report {facts.run_dir}"]
    if facts.configs:
        again.insert(0, f"medbase demo --set run.root={root} --set run.name={name}")
    parts.append("<p>Re-run (finished stages are skipped):</p><pre>"
                 + _esc("\n".join(again)) + "</pre>")  # fmt: skip
    config = config_of(facts)
    if config:
        parts.append("<details><summary>resolved config</summary><pre>"
                     f"{_esc(config)}</pre></details>")  # fmt: skip
    else:
        parts.append(_absent("stage config"))
    return "".join(parts)


TITLES = {
    "data": ("Data", section_data),
    "training": ("Training", section_training),
    "tune": ("Mixture sweep (tune)", section_tune),
    "accuracy": ("Accuracy per language", section_accuracy),
    "commands": ("Commands and config", section_commands),
}


def headline(facts: RunFacts) -> str:
    """The run in one line: accuracy before -> after, the chosen mixture, the data."""
    parts = []
    evals = list(facts.evals.values())
    if len(evals) == 2:
        before, after = (e["accuracy"]["macro_average"]["accuracy"] for e in evals)
        parts.append(
            f"macro accuracy {_pct(before)}% &rarr; <b>{_pct(after)}%</b> "
            f"({100 * (after - before):+.1f} points, {evals[1]['items']} items)"
        )
    if facts.tune:
        parts.append(f"mixture chosen from {len(facts.tune['trials'])} trials")
    if facts.train:
        parts.append(f"{facts.train.get('steps')} training steps")
    if facts.rewrite:
        rw = facts.rewrite
        parts.append(f"rewrite {rw['in']} in / {rw['out']} out / {rw['rejected']} rejected")
    return f'<p class="headline">{" · ".join(parts)}</p>' if parts else ""


def render_report(facts: RunFacts) -> str:
    """The HTML page of `facts` (every section of SECTIONS, in order)."""
    body = []
    for key in SECTIONS:
        title, render = TITLES[key]
        body.append(f'<section id="{key}"><h2>{_esc(title)}</h2>{render(facts)}</section>')
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    stages = ", ".join(facts.stages) or "none"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>medbase run {_esc(facts.run_dir)}</title><style>{CSS}</style></head><body>"
        f'<h1>medbase run report</h1><p class="muted">{_esc(facts.run_dir)} · stages: '
        f"{_esc(stages)} · written {stamp}</p>{headline(facts)}"
        + "".join(body)
        + "</body></html>\n"
    )


def write_report(run_dir: str) -> str:
    """Write `<run_dir>/report.html`; returns its path (or URI)."""
    facts = collect_run(run_dir)
    path = StageOutput(run_dir).child(REPORT_FILE)  # local runs: an absolute path
    storage.write_bytes(path, render_report(facts).encode("utf-8"))
    return path
