"""The rewrite stage's output directory, a local path or a URI (medbase_ray.storage):

    <run>/rewrite/conversations/part-*.parquet   conversation records (id, source, language, turns)
    <run>/rewrite/rejects/part-*.parquet         one row per rejected item, with the reason
    <run>/rewrite/config.yaml                    the resolved config     } medbase_ray.stage.
    <run>/rewrite/summary.json                   counts and token usage  } StageOutput
    <run>/rewrite/_SUCCESS                       written last            }

Every shard is a whole file written at once (temp file + rename on a local disk, one PUT
on an object store), so a killed run leaves whole shards only; an item is done when its
id is in a shard. Each shard's Parquet metadata holds the token usage its items spent,
so usage adds up across resumed runs.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from medbase_ray import storage
from medbase_ray.corpus.records import CONVERSATION_SCHEMA
from medbase_ray.rewrite.teacher import Usage
from medbase_ray.stage import StageOutput

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
SHARD_PREFIX = "part-"


class RewriteStore:
    """Shards of results under one StageOutput (its path or URI)."""

    def __init__(self, out: StageOutput | str) -> None:
        self.out = out if isinstance(out, StageOutput) else StageOutput(out)
        self.root = self.out.uri
        self.conversations = self.out.child("conversations")
        self.rejects = self.out.child("rejects")
        self._run_tag = f"{int(time.time())}-{uuid.uuid4().hex[:6]}"
        self._seq = 0

    # -- what is done ---------------------------------------------------------------
    def _shards(self, folder: str) -> list[str]:
        names = storage.list_files(folder, ".parquet")
        return [s for s in names if s.rpartition("/")[2].startswith(SHARD_PREFIX)]

    def shards(self) -> list[str]:
        return self._shards(self.conversations) + self._shards(self.rejects)

    def statuses(self) -> list[tuple[str, str | None]]:
        """(id, reject reason or None for an output) of every written row, all runs."""
        rows: list[tuple[str, str | None]] = []
        for shard in self._shards(self.conversations):
            ids = storage.read_parquet(shard, columns=["id"])["id"].to_pylist()
            rows.extend((i, None) for i in ids)
        for shard in self._shards(self.rejects):
            table = storage.read_parquet(shard, columns=["id", "reason"])
            rows.extend(zip(table["id"].to_pylist(), table["reason"].to_pylist(), strict=True))
        return rows

    def usage(self) -> Usage:
        """Token usage of every written shard (all runs)."""
        total = Usage()
        for shard in self.shards():
            meta = storage.open_parquet(shard).schema_arrow.metadata or {}
            if USAGE_KEY in meta:
                total.add(Usage(**json.loads(meta[USAGE_KEY])))
        return total

    def read_conversations(self, id_suffixes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Output records, optionally only those whose id ends with one of `id_suffixes`."""
        rows: list[dict[str, Any]] = []
        for shard in self._shards(self.conversations):
            rows.extend(storage.read_parquet(shard, columns=CONVERSATION_SCHEMA.names).to_pylist())
        if id_suffixes:
            rows = [r for r in rows if r["id"].endswith(id_suffixes)]
        return rows

    # -- writing ----------------------------------------------------------------------
    def begin(self, config_yaml: str) -> None:
        """Start or resume: the stage's directory and config (StageOutput.begin), and
        away with the temp files a killed run left on a local disk."""
        self.out.begin(config_yaml)
        for folder in (self.conversations, self.rejects):
            storage.makedirs(folder)
            for tmp in storage.list_files(folder, ".tmp"):
                storage.remove_file(tmp)

    def write_results(self, results: list[dict[str, Any]]) -> tuple[int, int]:
        """Write a batch of result rows as one output shard and one rejects shard."""
        outputs = [r for r in results if r["reason"] is None]
        rejects = [r for r in results if r["reason"] is not None]
        name = f"{SHARD_PREFIX}{self._run_tag}-{self._seq:05d}.parquet"
        self._seq += 1
        if outputs:
            self._write(storage.join(self.conversations, name), outputs, CONVERSATION_SCHEMA)
        if rejects:
            self._write(storage.join(self.rejects, name), rejects, REJECT_SCHEMA)
        return len(outputs), len(rejects)

    def _write(self, uri: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        usage = Usage()
        for r in rows:
            usage.add(Usage(r["requests"], r["prompt_tokens"], r["completion_tokens"]))
        meta = {USAGE_KEY: json.dumps(asdict(usage)).encode()}
        fields = schema.names
        table = pa.Table.from_pylist(
            [{k: r.get(k) for k in fields} for r in rows], schema=schema.with_metadata(meta)
        )
        storage.write_parquet(uri, table, row_group_rows=max(1, table.num_rows))


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
