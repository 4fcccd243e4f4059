"""The report: accuracy per source, per language, the published tables' columns, averages.

- per source: correct / items; a source with no correct answer is 0.0 (Apollo's scorer
  only wrote sources that had one right, which hid them);
- per language: the mean of that language's sources (Apollo's way, not pooled items);
- Apollo's average: the mean of its nine table columns that are present; the Medbase
  README's eight columns likewise; published rows (published.yaml) shown beside them;
- multi-answer items (CMExam's "BCDE") count a predicted letter that is one of the
  answers as correct; each source says how many it had;
- with apollo_compat, sources without a correct answer are left out of every average
  (Apollo's scorer writes no accuracy for them) and listed as dropped;
- macro average: the mean of the languages present among the six.

Each has a 95% bootstrap interval: every source's item set is resampled (B times,
seeded) and every average recomputed from the resampled sources. Resampling n 0/1
outcomes with replacement gives Binomial(n, accuracy) correct answers, which is drawn
directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from medbase_ray.corpus.languages import LANGUAGES, source_languages

# Apollo (Wang et al. 2024), Table 3: column -> XMedBench source.
APOLLO_COLUMNS: dict[str, str] = {
    "USMLE": "medqa-usmle",
    "MedMCQA": "medmcqa",
    "MMLU-EN": "mmlu-medical",
    "MCMLE": "medqa-mcmle",
    "CMMLU": "cmmlu-medical",
    "FrenchMedMCQA": "frenchmedmcqa",
    "HEAD-QA": "headqa",
    "MMLU-AR": "mmlu-medical-ar",
    "MMLU-HI": "mmlu-medical-hi",
}
# The Medbase README's results table: column -> XMedBench source (CExam is CMExam).
MEDBASE_COLUMNS: dict[str, str] = {
    "MedQA-USMLE": "medqa-usmle",
    "MedMCQA": "medmcqa",
    "PubMedQA": "pubmedqa",
    "MMLU-Medical": "mmlu-medical",
    "MedQA-MCMLE": "medqa-mcmle",
    "CMB-single": "cmb-single",
    "CMMLU-Medical": "cmmlu-medical",
    "CExam": "cmexam",
}
_TABLES = {
    "apollo": ("apollo_average", APOLLO_COLUMNS),
    "medbase": ("medbase_average", MEDBASE_COLUMNS),
}


@cache
def published_tables() -> dict[str, Any]:
    """Published reference rows (published.yaml), per table, with their source."""
    text = (resources.files("medbase_ray.eval") / "published.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["tables"]


def _source_order(source: str, language: str) -> tuple:
    known = list(source_languages())
    lang_rank = LANGUAGES.index(language) if language in LANGUAGES else len(LANGUAGES)
    return (lang_rank, known.index(source) if source in known else len(known), source)


def _interval(samples: np.ndarray | None) -> list[float] | None:
    if samples is None or samples.size == 0:
        return None
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [float(lo), float(hi)]


def _table_average(
    table: dict[str, str], point: dict[str, float], mean_of
) -> dict[str, Any] | None:
    """The mean of a published table's columns that are present (None: none is)."""
    columns = {col: src for col, src in table.items() if src in point}
    if not columns:
        return None
    value, samples = mean_of(list(columns.values()))
    return {
        "columns": {col: point[src] for col, src in columns.items()},
        "missing": [col for col in table if col not in columns],
        "accuracy": value,
        "ci95": _interval(samples),
    }


def _accuracy_block(
    outcomes: dict[str, list[bool]],
    languages: dict[str, str],
    samples: int,
    seed: int,
    drop_zero_correct: bool = False,
) -> dict[str, Any]:
    """Every accuracy of the report for one outcome column (correct, correct_norm).

    drop_zero_correct: leave sources without a correct answer out of every average, as
    Apollo's scorer does (it writes no accuracy for them); they are listed.
    """
    rng = np.random.default_rng(seed)
    sources = sorted(outcomes, key=lambda s: _source_order(s, languages[s]))
    point: dict[str, float] = {}
    boot: dict[str, np.ndarray | None] = {}
    block: dict[str, Any] = {"sources": {}, "languages": {}}
    for source in sources:
        n, right = len(outcomes[source]), int(sum(outcomes[source]))
        accuracy = right / n
        block["sources"][source] = {
            "language": languages[source],
            "items": n,
            "correct": right,
            "accuracy": accuracy,
            "ci95": None,
        }
        if drop_zero_correct and right == 0:
            continue
        point[source] = accuracy
        boot[source] = rng.binomial(n, accuracy, size=samples) / n if samples else None
        block["sources"][source]["ci95"] = _interval(boot[source])
    block["dropped_zero_correct"] = [s for s in sources if s not in point]

    def mean_of(names: Sequence[str]) -> tuple[float, np.ndarray | None]:
        value = float(np.mean([point[s] for s in names]))
        if not samples:
            return value, None
        return value, np.mean(np.stack([boot[s] for s in names]), axis=0)

    lang_boot: dict[str, np.ndarray | None] = {}
    lang_point: dict[str, float] = {}
    by_language: dict[str, list[str]] = {}
    for source in point:
        by_language.setdefault(languages[source], []).append(source)
    for language, names in by_language.items():
        lang_point[language], lang_boot[language] = mean_of(names)
        block["languages"][language] = {
            "sources": names,
            "accuracy": lang_point[language],
            "ci95": _interval(lang_boot[language]),
        }

    block["apollo_average"] = _table_average(APOLLO_COLUMNS, point, mean_of)
    block["medbase_average"] = _table_average(MEDBASE_COLUMNS, point, mean_of)

    present = [lang for lang in LANGUAGES if lang in lang_point]
    block["macro_average"] = None
    if present:
        value = float(np.mean([lang_point[lang] for lang in present]))
        macro_boot = (
            np.mean(np.stack([lang_boot[lang] for lang in present]), axis=0) if samples else None
        )
        block["macro_average"] = {
            "languages": present,
            "missing": [lang for lang in LANGUAGES if lang not in present],
            "accuracy": value,
            "ci95": _interval(macro_boot),
        }
    return block


def build_report(
    results: Sequence[dict[str, Any]],
    bootstrap_samples: int = 1000,
    seed: int = 0,
    apollo_compat: bool = False,
    skipped: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The report of a list of eval results (see the module docstring).

    `accuracy` scores `correct`; `accuracy_norm` (cloze) scores `correct_norm`.
    apollo_compat: averages as Apollo's scorer makes them (zero-correct sources left
    out, and listed); skipped: per source, the items Apollo's prompt limit left out.
    """
    if not results:
        raise ValueError("no results to report")
    languages: dict[str, str] = {}
    for row in results:
        known = languages.setdefault(row["source"], row["language"])
        if known != row["language"]:
            raise ValueError(
                f"source {row['source']!r} has items in {known!r} and {row['language']!r}"
                f" (item {row['id']})"
            )
    multi: dict[str, int] = {}
    for row in results:
        multi[row["source"]] = multi.get(row["source"], 0) + (len(row["answer"]) > 1)
    report: dict[str, Any] = {
        "items": len(results),
        "unextractable": sum(row.get("prediction") is None for row in results),
        "bootstrap_samples": bootstrap_samples,
        "scoring": "apollo" if apollo_compat else "default",
        "skipped_long_prompts": dict(skipped or {}),
    }
    for column, key in (("correct", "accuracy"), ("correct_norm", "accuracy_norm")):
        if not any(column in row for row in results):
            continue
        outcomes: dict[str, list[bool]] = {}
        for row in results:
            outcomes.setdefault(row["source"], []).append(bool(row.get(column)))
        block = _accuracy_block(outcomes, languages, bootstrap_samples, seed, apollo_compat)
        for source, stats in block["sources"].items():
            stats["multi_answer"] = multi[source]
        report[key] = block
    return report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


def _table_lines(name: str, average: dict[str, Any]) -> list[str]:
    """This run's row of a published table, and the table's published rows below it."""
    _, columns = _TABLES[name]
    published = published_tables()[name]
    cols = list(columns)
    lines = [
        "",
        "| model | " + " | ".join(cols) + " | Avg. |",
        "|---|" + " ---: |" * (len(cols) + 1),
    ]
    cells = [_pct(average["columns"].get(c)) for c in cols]
    lines.append("| this run | " + " | ".join(cells) + f" | {_pct(average['accuracy'])} |")
    for model, values in published["rows"].items():
        by_col = dict(zip(published["columns"], values, strict=True))
        # Two decimals, as published (not rounded again).
        row = ["-" if by_col.get(c) is None else f"{by_col[c]:.2f}" for c in cols]
        lines.append(f"| {model} (published) | " + " | ".join(row) + " | |")
    if published["rows"]:
        lines += ["", f"Published rows: {published['source']}."]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (percentages)."""
    run = report.get("run", {})
    lines = ["# Evaluation report", ""]
    if run:
        lines.append(
            f"mode `{run.get('mode')}` · model `{run.get('model')}` · {run.get('k_shot')}-shot"
            f" · benchmark `{run.get('benchmark')}` (split `{run.get('split')}`)"
        )
        lines.append("")
    lines.append(f"{report['items']} items; answer not extractable: {report['unextractable']}")
    if report.get("scoring") == "apollo":
        lines.append(
            "Scoring: Apollo's own (eval.apollo_compat): first answer letter only, "
            "generate_score.py's extraction, zero-correct sources dropped from averages."
        )
    else:
        lines.append(
            "Scoring: a multi-answer item counts a predicted letter that is one of its answers."
        )
    skipped = report.get("skipped_long_prompts") or {}
    if skipped:
        listed = ", ".join(f"{s} {n}" for s, n in skipped.items())
        lines.append(f"Skipped (prompt over 4,096 characters, as Apollo): {listed}")
    for key, title in (("accuracy", "Accuracy"), ("accuracy_norm", "Length-normalised accuracy")):
        block = report.get(key)
        if block is None:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            "| source | language | items | multi-answer | correct | accuracy % | 95% CI |",
        ]
        lines.append("| --- | --- | ---: | ---: | ---: | ---: | --- |")
        for source, s in block["sources"].items():
            lines.append(
                f"| {source} | {s['language']} | {s['items']} | {s.get('multi_answer', 0)} "
                f"| {s['correct']} | {_pct(s['accuracy'])} | {_ci(s['ci95'])} |"
            )
        if block.get("dropped_zero_correct"):
            dropped = ", ".join(block["dropped_zero_correct"])
            lines += ["", f"Left out of the averages (no correct answer, as Apollo): {dropped}"]
        lines += ["", "| language | sources | accuracy % | 95% CI |", "| --- | --- | ---: | --- |"]
        for language, s in block["languages"].items():
            lines.append(
                f"| {language} | {', '.join(s['sources'])} | {_pct(s['accuracy'])} | {_ci(s['ci95'])} |"
            )
        lines += ["", "| average | over | accuracy % | 95% CI |", "| --- | --- | ---: | --- |"]
        for name, label, total in (("apollo", "Apollo", 9), ("medbase", "Medbase", 8)):
            average = block.get(_TABLES[name][0])
            if average is not None:
                over = f"{len(average['columns'])} of {label}'s {total} columns"
                lines.append(
                    f"| {label} | {over} | {_pct(average['accuracy'])} | {_ci(average['ci95'])} |"
                )
        macro = block["macro_average"]
        if macro is not None:
            over = ", ".join(macro["languages"])
            lines.append(
                f"| six-language macro | {over} | {_pct(macro['accuracy'])} | {_ci(macro['ci95'])} |"
            )
        for name, (key, _) in _TABLES.items():
            if block.get(key) is not None:
                lines += _table_lines(name, block[key])
    return "\n".join(lines) + "\n"
