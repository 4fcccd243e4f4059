"""Writers for the contracts: JSONL and Parquet, each written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON lines; the file appears complete or not at all."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    n = 0
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def write_parquet(path: str | Path, rows: list[dict[str, Any]], schema: pa.Schema) -> int:
    """Write rows in `schema` to one Parquet file atomically."""
    path = Path(path)
    table = pa.Table.from_pylist(rows, schema=schema)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows


def write_json(path: str | Path, data: Any) -> None:
    """Write one JSON document atomically (manifests, reports)."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, path)
