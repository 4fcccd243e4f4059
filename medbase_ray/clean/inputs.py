"""Conversation files -> blocks of input rows for the clean stream (no Ray).

Rows are the conversation contract plus where they came from and, for a row the reader
rejected, the reason (JSON), so that rejected inputs are counted and written like any
removed record: in = kept + removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from medbase_ray.corpus.readers import read_conversations
from medbase_ray.corpus.rejects import RejectSink

INPUT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("language", pa.string()),
        ("turns", pa.list_(pa.string())),
        ("file", pa.string()),
        ("index", pa.int64()),
        ("reject", pa.string()),
    ]
)


def _index_of(record_id: str) -> int | None:
    tail = record_id.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


def iter_input_blocks(
    paths: list[str], block_rows: int, origin: dict[str, str | None] | None = None
) -> Iterator[pa.Table]:
    """The records of `paths` (read with corpus.readers.read_conversations, bad rows
    rejected, not raised) in tables of at most `block_rows` rows. `origin`: the
    `source`/`language` to use where a file's name and folders give none (prepare's)."""
    rows: list[dict] = []
    for path in paths:
        sink = RejectSink()
        records, _ = read_conversations(path, on_error="reject", rejects=sink, **(origin or {}))
        for r in records:
            rows.append(
                {
                    "id": r["id"],
                    "source": r["source"],
                    "language": r["language"],
                    "turns": r["turns"],
                    "file": path,
                    "index": _index_of(r["id"]),
                    "reject": None,
                }
            )
            if len(rows) >= block_rows:
                yield pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)
                rows = []
        for rej in sink.rows:
            reason = {"field": rej.field, "reason": rej.reason, "raw": rej.raw}
            rows.append(
                {
                    "id": None,
                    "source": None,
                    "language": None,
                    "turns": [],
                    "file": rej.file,
                    "index": rej.index,
                    "reject": json.dumps(reason, ensure_ascii=False),
                }
            )
    if rows:
        yield pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)


def read_groups(
    batch: pa.Table, block_rows: int, origin: dict[str, str | None] | None = None
) -> Iterator[pa.Table]:
    """Ray Data map: a batch of `{"paths": [...]}` items -> their rows, block by block."""
    for paths in batch["paths"].to_pylist():
        yield from iter_input_blocks(paths, block_rows, origin)
