"""Rejected rows: written with their reason, never silently dropped."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class CorpusError(ValueError):
    """Bad input, naming the file, the row index and the field."""

    def __init__(self, file: str, index: int | None, field: str, reason: str) -> None:
        where = f"{file}" + (f", row {index}" if index is not None else "")
        super().__init__(f"{where}, field {field!r}: {reason}")
        self.file, self.index, self.field, self.reason = file, index, field, reason


class AllRejected(ValueError):
    """Every input row was rejected: nothing to work on (issue 18). Says the first
    reasons and where the rejects are."""

    def __init__(self, stage: str, read: int, reasons: dict[str, int], rejects: str) -> None:
        first = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        super().__init__(
            f"{stage}: every one of the {read} input rows was rejected ({first[:600]}); "
            f"rejects: {rejects}"
        )
        self.read, self.reasons, self.rejects = read, reasons, rejects


def reason_key(field: str, reason: str) -> str:
    """A reject's reason without its particulars, to count rejects by reason:
    ("turns[3]", "odd number of turns (3): ...") -> "turns[]: odd number of turns"."""
    head = re.split(r": | \(", reason, maxsplit=1)[0]
    field = re.sub(r"\[\d+\]", "[]", field)
    return f"{field}: " + re.sub(r"\d+", "N", head)


def count_reasons(rejects: Iterable[tuple[str, str]]) -> dict[str, int]:
    """{reason_key: count} of (field, reason) pairs, most frequent first."""
    counts = Counter(reason_key(f, r) for f, r in rejects)
    return dict(counts.most_common())


@dataclass
class ReadCounts:
    read: int = 0
    kept: int = 0
    rejected: int = 0

    def add(self, other: ReadCounts) -> None:
        self.read += other.read
        self.kept += other.kept
        self.rejected += other.rejected


@dataclass
class Reject:
    file: str
    index: int | None
    field: str
    reason: str
    raw: str = ""

    def to_row(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "index": self.index,
            "field": self.field,
            "reason": self.reason,
            "raw": self.raw,
        }


def raw_snippet(value: Any, limit: int = 2000) -> str:
    """The rejected input as text, cut to `limit` characters."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:limit]


@dataclass
class RejectSink:
    """Collects rejects in memory and/or appends them to a JSONL file."""

    path: Path | None = None
    rows: list[Reject] = field(default_factory=list)

    def __call__(self, reject: Reject) -> None:
        self.rows.append(reject)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(reject.to_row(), ensure_ascii=False) + "\n")
