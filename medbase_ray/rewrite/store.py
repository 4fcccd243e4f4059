"""The rewrite stage's output directory (local filesystem):

    <run>/rewrite/conversations/part-*.parquet   conversation records (id, source, language, turns)
    <run>/rewrite/rejects/part-*.parquet         one row per rejected item, with the reason
    <run>/rewrite/config.yaml                    the resolved config
    <run>/rewrite/summary.json                   counts and token usage
    <run>/rewrite/_SUCCESS                       written last

Every shard is written atomically (temp file + rename), so a killed run leaves whole
shards only; an item is done when its id is in a shard. Each shard's Parquet metadata
holds the token usage its items spent, so usage adds up across resumed runs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medbase_ray.corpus.records import CONVERSATION_SCHEMA
from medbase_ray.corpus.writers import write_json, write_parquet
from medbase_ray.rewrite.teacher import Usage

REJECT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_id", pa.string()),
        ("task", pa.string()),
        ("source", pa.string()),
        ("language", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),
    ]
)
USAGE_KEY = b"medbase.usage"
SUCCESS = "_SUCCESS"


class RewriteStore:
    def __init__(self, root: str | Path) -> None:
        if "://" in str(root):
            raise ValueError(f"rewrite writes to a local (or mounted) directory, got {root}")
        self.root = Path(root)
        self.conversations = self.root / "conversations"
        self.rejects = self.root / "rejects"
        self._run_tag = f"{int(time.time())}-{uuid.uuid4().hex[:6]}"
        self._seq = 0

    # -- what is done ---------------------------------------------------------------
    def shards(self) -> list[Path]:
        return sorted(self.conversations.glob("part-*.parquet")) + sorted(
            self.rejects.glob("part-*.parquet")
        )

    def statuses(self) -> list[tuple[str, str | None]]:
        """(id, reject reason or None for an output) of every written row, all runs."""
        rows: list[tuple[str, str | None]] = []
        for shard in sorted(self.conversations.glob("part-*.parquet")):
            rows.extend((i, None) for i in pq.read_table(shard, columns=["id"])["id"].to_pylist())
        for shard in sorted(self.rejects.glob("part-*.parquet")):
            table = pq.read_table(shard, columns=["id", "reason"])
            rows.extend(zip(table["id"].to_pylist(), table["reason"].to_pylist(), strict=True))
        return rows

    def usage(self) -> Usage:
        """Token usage of every written shard (all runs)."""
        total = Usage()
        for shard in self.shards():
            meta = pq.read_schema(shard).metadata or {}
            if USAGE_KEY in meta:
                total.add(Usage(**json.loads(meta[USAGE_KEY])))
        return total

    def read_conversations(self, id_suffixes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Output records, optionally only those whose id ends with one of `id_suffixes`."""
        rows: list[dict[str, Any]] = []
        for shard in sorted(self.conversations.glob("part-*.parquet")):
            rows.extend(pq.read_table(shard).to_pylist())
        if id_suffixes:
            rows = [r for r in rows if r["id"].endswith(id_suffixes)]
        return rows

    # -- writing ----------------------------------------------------------------------
    def prepare(self, config_yaml: str) -> None:
        """Make the directories, drop temp files a killed run left, clear _SUCCESS and
        write the resolved config this run works with."""
        for d in (self.conversations, self.rejects):
            d.mkdir(parents=True, exist_ok=True)
            for tmp in d.glob(".part-*"):
                tmp.unlink(missing_ok=True)
        (self.root / SUCCESS).unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config.yaml.", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(config_yaml)
        os.replace(tmp, self.root / "config.yaml")

    def write_results(self, results: list[dict[str, Any]]) -> tuple[int, int]:
        """Write a batch of result rows as one output shard and one rejects shard."""
        outputs = [r for r in results if r["reason"] is None]
        rejects = [r for r in results if r["reason"] is not None]
        name = f"part-{self._run_tag}-{self._seq:05d}.parquet"
        self._seq += 1
        if outputs:
            self._write(self.conversations / name, outputs, CONVERSATION_SCHEMA)
        if rejects:
            self._write(self.rejects / name, rejects, REJECT_SCHEMA)
        return len(outputs), len(rejects)

    def _write(self, path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        usage = Usage()
        for r in rows:
            usage.add(Usage(r["requests"], r["prompt_tokens"], r["completion_tokens"]))
        meta = {USAGE_KEY: json.dumps(asdict(usage)).encode()}
        fields = schema.names
        write_parquet(
            path, [{k: r.get(k) for k in fields} for r in rows], schema.with_metadata(meta)
        )

    def mark_success(self, summary: dict[str, Any]) -> None:
        write_json(self.root / "summary.json", summary)
        (self.root / SUCCESS).write_text("", encoding="utf-8")


class ShardBuffer:
    """Collects result rows and writes them to `store` as one shard every `rows` rows or
    `every_s` seconds (checked as rows arrive), and on `flush()`."""

    def __init__(self, store: RewriteStore, rows: int, every_s: float) -> None:
        self.store, self.rows, self.every_s = store, rows, every_s
        self.pending: list[dict[str, Any]] = []
        self.last_s = time.monotonic()
        self.written = [0, 0]  # outputs, rejects

    def add(self, results: list[dict[str, Any]]) -> None:
        self.pending.extend(results)
        if len(self.pending) >= self.rows or time.monotonic() - self.last_s >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            out, rejected = self.store.write_results(self.pending)
            self.written[0] += out
            self.written[1] += rejected
            self.pending = []
        self.last_s = time.monotonic()


def task_of(item_id: str) -> str:
    """`medicalBook_en_text:3#qa` -> "qa"; `x#translate-zh` -> "translate"."""
    return item_id.rpartition("#")[2].split("-", 1)[0]
