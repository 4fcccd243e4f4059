"""The report: accuracy per source, per language, Apollo's nine columns, the macro average.

- per source: correct / items; a source with no correct answer is 0.0 (Apollo's scorer
  only wrote sources that had one right, which hid them);
- per language: the mean of that language's sources (Apollo's way, not pooled items);
- Apollo's average: the mean of its nine table columns that are present;
- macro average: the mean of the languages present among the six.

Each has a 95% bootstrap interval: every source's item set is resampled (B times,
seeded) and every average recomputed from the resampled sources. Resampling n 0/1
outcomes with replacement gives Binomial(n, accuracy) correct answers, which is drawn
directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

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


def _source_order(source: str, language: str) -> tuple:
    known = list(source_languages())
    lang_rank = LANGUAGES.index(language) if language in LANGUAGES else len(LANGUAGES)
    return (lang_rank, known.index(source) if source in known else len(known), source)


def _interval(samples: np.ndarray | None) -> list[float] | None:
    if samples is None or samples.size == 0:
        return None
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [float(lo), float(hi)]


def _accuracy_block(
    outcomes: dict[str, list[bool]], languages: dict[str, str], samples: int, seed: int
) -> dict[str, Any]:
    """Every accuracy of the report for one outcome column (correct, correct_norm)."""
    rng = np.random.default_rng(seed)
    sources = sorted(outcomes, key=lambda s: _source_order(s, languages[s]))
    point: dict[str, float] = {}
    boot: dict[str, np.ndarray | None] = {}
    block: dict[str, Any] = {"sources": {}, "languages": {}}
    for source in sources:
        n, right = len(outcomes[source]), int(sum(outcomes[source]))
        point[source] = right / n
        boot[source] = rng.binomial(n, point[source], size=samples) / n if samples else None
        block["sources"][source] = {
            "language": languages[source],
            "items": n,
            "correct": right,
            "accuracy": point[source],
            "ci95": _interval(boot[source]),
        }

    def mean_of(names: Sequence[str]) -> tuple[float, np.ndarray | None]:
        value = float(np.mean([point[s] for s in names]))
        if not samples:
            return value, None
        return value, np.mean(np.stack([boot[s] for s in names]), axis=0)

    lang_boot: dict[str, np.ndarray | None] = {}
    lang_point: dict[str, float] = {}
    by_language: dict[str, list[str]] = {}
    for source in sources:
        by_language.setdefault(languages[source], []).append(source)
    for language, names in by_language.items():
        lang_point[language], lang_boot[language] = mean_of(names)
        block["languages"][language] = {
            "sources": names,
            "accuracy": lang_point[language],
            "ci95": _interval(lang_boot[language]),
        }

    columns = {col: src for col, src in APOLLO_COLUMNS.items() if src in point}
    block["apollo_average"] = None
    if columns:
        value, samples_avg = mean_of(list(columns.values()))
        block["apollo_average"] = {
            "columns": {col: point[src] for col, src in columns.items()},
            "missing": [col for col in APOLLO_COLUMNS if col not in columns],
            "accuracy": value,
            "ci95": _interval(samples_avg),
        }

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
    results: Sequence[dict[str, Any]], bootstrap_samples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The report of a list of eval results (see the module docstring).

    `accuracy` scores `correct`; `accuracy_norm` (cloze) scores `correct_norm`.
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
    report: dict[str, Any] = {
        "items": len(results),
        "unextractable": sum(row.get("prediction") is None for row in results),
        "bootstrap_samples": bootstrap_samples,
    }
    for column, key in (("correct", "accuracy"), ("correct_norm", "accuracy_norm")):
        if not any(column in row for row in results):
            continue
        outcomes: dict[str, list[bool]] = {}
        for row in results:
            outcomes.setdefault(row["source"], []).append(bool(row.get(column)))
        report[key] = _accuracy_block(outcomes, languages, bootstrap_samples, seed)
    return report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


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
    for key, title in (("accuracy", "Accuracy"), ("accuracy_norm", "Length-normalised accuracy")):
        block = report.get(key)
        if block is None:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            "| source | language | items | correct | accuracy % | 95% CI |",
        ]
        lines.append("| --- | --- | ---: | ---: | ---: | --- |")
        for source, s in block["sources"].items():
            lines.append(
                f"| {source} | {s['language']} | {s['items']} | {s['correct']} "
                f"| {_pct(s['accuracy'])} | {_ci(s['ci95'])} |"
            )
        lines += ["", "| language | sources | accuracy % | 95% CI |", "| --- | --- | ---: | --- |"]
        for language, s in block["languages"].items():
            lines.append(
                f"| {language} | {', '.join(s['sources'])} | {_pct(s['accuracy'])} | {_ci(s['ci95'])} |"
            )
        lines += ["", "| average | over | accuracy % | 95% CI |", "| --- | --- | ---: | --- |"]
        apollo = block["apollo_average"]
        if apollo is not None:
            over = f"{len(apollo['columns'])} of Apollo's 9 columns"
            lines.append(
                f"| Apollo | {over} | {_pct(apollo['accuracy'])} | {_ci(apollo['ci95'])} |"
            )
        macro = block["macro_average"]
        if macro is not None:
            over = ", ".join(macro["languages"])
            lines.append(
                f"| six-language macro | {over} | {_pct(macro['accuracy'])} | {_ci(macro['ci95'])} |"
            )
        if apollo is not None:
            cols = list(APOLLO_COLUMNS)
            lines += ["", "| " + " | ".join(cols) + " | Avg. |", "|" + " ---: |" * (len(cols) + 1)]
            cells = [_pct(apollo["columns"].get(c)) for c in cols]
            lines.append("| " + " | ".join(cells) + f" | {_pct(apollo['accuracy'])} |")
    return "\n".join(lines) + "\n"
