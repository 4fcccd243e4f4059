"""Rejected rows: written with their reason, never silently dropped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class CorpusError(ValueError):
    """Bad input, naming the file, the row index and the field."""

    def __init__(self, file: str, index: int | None, field: str, reason: str) -> None:
        where = f"{file}" + (f", row {index}" if index is not None else "")
        super().__init__(f"{where}, field {field!r}: {reason}")
        self.file, self.index, self.field, self.reason = file, index, field, reason


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
