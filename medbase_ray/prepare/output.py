"""Writing the packed stream: Parquet shards per source, rejects as JSON lines.

`write_packed_blocks` is what one write task of the Ray sink does with its blocks; it
returns the shards it wrote and the counts, which the driver merges into the manifest.
Names depend only on the task index, so a retried task overwrites its own files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medbase_ray import storage
from medbase_ray.corpus.records import PACKED_ROW_SCHEMA
from medbase_ray.corpus.rejects import count_reasons
from medbase_ray.prepare.manifest import REJECTS_DIR, add_counts, block_counts, empty_counts
from medbase_ray.prepare.stream import source_dir_name, source_key


class _ShardWriter:
    """Buffers one source's rows of one task; writes a shard every `rows_per_shard`."""

    def __init__(self, out_dir: str, key: str, task_idx: int, rows_per_shard: int, rg: int):
        self.out_dir, self.key, self.task_idx = out_dir, key, task_idx
        self.rows_per_shard, self.row_group_rows = rows_per_shard, rg
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.shards: list[dict[str, Any]] = []

    def add(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered += table.num_rows
        while self.buffered >= self.rows_per_shard:
            self.flush(self.rows_per_shard)

    def flush(self, limit: int | None = None) -> None:
        if not self.buffered:
            return
        table = pa.concat_tables(self.buffer)
        n = min(limit or table.num_rows, table.num_rows)
        head, rest = table.slice(0, n), table.slice(n)
        rel = f"{source_dir_name(self.key)}/part-{self.task_idx:05d}-{len(self.shards):04d}.parquet"
        storage.write_parquet(storage.join(self.out_dir, rel), head, self.row_group_rows)
        self.shards.append({"key": self.key, "path": rel, "rows": n})
        self.buffer = [rest] if rest.num_rows else []
        self.buffered = rest.num_rows


def write_packed_blocks(
    blocks: Iterable[pa.Table],
    out_dir: str,
    task_idx: int,
    rows_per_shard: int,
    row_group_rows: int,
) -> dict[str, Any]:
    """Write packed rows (PACKED_ROW_SCHEMA columns) per source and reject lines.

    Returns {"shards": [{key, path, rows}], "counts": [[source, language, counts]],
    "reject_file": path or None, "reasons": {reason: count}}.
    """
    writers: dict[str, _ShardWriter] = {}
    counts: dict[tuple[str | None, str | None], dict[str, int]] = {}
    reject_lines: list[str] = []
    for block in blocks:
        for k, c in block_counts(block).items():
            add_counts(counts.setdefault(k, empty_counts()), c)
        is_reject = pc.is_valid(block["reject"])
        rejects = block.filter(is_reject)
        reject_lines.extend(rejects["reject"].to_pylist())
        packed = block.filter(pc.invert(is_reject)).select(PACKED_ROW_SCHEMA.names)
        packed = packed.cast(PACKED_ROW_SCHEMA)
        if not packed.num_rows:
            continue
        keys = [
            source_key(s, lang)
            for s, lang in zip(
                packed["source"].to_pylist(), packed["language"].to_pylist(), strict=True
            )
        ]
        for key in dict.fromkeys(keys):
            mask = pa.array([k == key for k in keys])
            if key not in writers:
                writers[key] = _ShardWriter(out_dir, key, task_idx, rows_per_shard, row_group_rows)
            writers[key].add(packed.filter(mask))
    for w in writers.values():
        w.flush()
    reject_file = None
    if reject_lines:
        reject_file = f"{REJECTS_DIR}/part-{task_idx:05d}.jsonl"
        data = "".join(line + "\n" for line in reject_lines).encode("utf-8")
        storage.write_bytes(storage.join(out_dir, reject_file), data)
    parsed = (json.loads(line) for line in reject_lines)
    return {
        "shards": [s for w in writers.values() for s in w.shards],
        "counts": [[s, lang, c] for (s, lang), c in counts.items()],
        "reject_file": reject_file,
        "reasons": count_reasons((r["field"], r["reason"]) for r in parsed),
    }


def reject_rows(out_dir: str, reject_files: list[str]) -> list[dict[str, Any]]:
    """Every line of the rejects files (small: one per rejected conversation)."""
    rows = []
    for rel in reject_files:
        text = storage.read_bytes(storage.join(out_dir, rel)).decode("utf-8")
        rows.extend(json.loads(line) for line in text.splitlines() if line.strip())
    return rows
