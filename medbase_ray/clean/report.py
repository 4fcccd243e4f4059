"""The clean report: counts per source and language, the benchmark items most matched.

    in = kept + removed_contaminated + exact_duplicate + near_duplicate + invalid

holds for every row of the table (`check_counts`); `contaminated` counts every record
that matched the benchmark, removed or (action: flag) kept.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

COLUMNS = (
    "in",
    "contaminated",
    "removed_contaminated",
    "exact_duplicate",
    "near_duplicate",
    "invalid",
    "kept",
)
REMOVED = ("removed_contaminated", "exact_duplicate", "near_duplicate", "invalid")


def merge_shard_results(results: Iterable[dict]) -> tuple[dict[str, dict[str, int]], Counter]:
    """finish_shard results -> (counts per "source/language", matches per item)."""
    counts: dict[str, Counter] = {}
    items: Counter = Counter()
    for r in results:
        for key, c in json.loads(r["counts"]).items():
            counts.setdefault(key, Counter()).update(c)
        items.update(json.loads(r["items"]))
    table = {k: {col: int(counts[k].get(col, 0)) for col in COLUMNS} for k in sorted(counts)}
    return table, items


def check_counts(table: dict[str, dict[str, int]]) -> None:
    for key, c in table.items():
        if c["in"] != c["kept"] + sum(c[r] for r in REMOVED):
            raise AssertionError(f"clean counts of {key} do not add up: {c}")


def build_report(
    table: dict[str, dict[str, int]], items: Counter, top: int, settings: dict[str, Any]
) -> dict[str, Any]:
    total = {col: sum(c[col] for c in table.values()) for col in COLUMNS}
    by_language: dict[str, Counter] = {}
    for key, c in table.items():
        by_language.setdefault(key.rpartition("/")[2], Counter()).update(c)
    return {
        "total": total,
        "by_source_language": table,
        "by_language": {k: dict(v) for k, v in sorted(by_language.items())},
        "top_benchmark_items": [
            {"item": item, "records": n}
            for item, n in sorted(items.items(), key=lambda x: (-x[1], x[0]))[:top]
        ],
        "settings": settings,
    }


def render_markdown(report: dict[str, Any]) -> str:
    head = "| source/language | " + " | ".join(COLUMNS) + " |"
    lines = ["# Clean report", "", head, "|" + " --- |" * (len(COLUMNS) + 1)]
    for key, c in report["by_source_language"].items():
        lines.append(f"| {key} | " + " | ".join(str(c[col]) for col in COLUMNS) + " |")
    t = report["total"]
    lines.append("| **total** | " + " | ".join(f"**{t[col]}**" for col in COLUMNS) + " |")
    lines += ["", "## Benchmark items most often matched", ""]
    if report["top_benchmark_items"]:
        lines += ["| item | records |", "| --- | --- |"]
        lines += [f"| {x['item']} | {x['records']} |" for x in report["top_benchmark_items"]]
    else:
        lines.append("None: no training record shares an n-gram with the benchmark.")
    s = report["settings"]
    lines += [
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(s, indent=2, ensure_ascii=False),
        "```",
        "",
    ]
    return "\n".join(lines)
