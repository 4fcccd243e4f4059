"""Mixture selection (pure): which packed rows of which sources, in which order.

1. Each source offers `epochs x` its real tokens (Apollo's data_epoch; default 1).
2. Shares over the units of `by` (languages or sources): the `weights`, else
   p_i ∝ n_i^alpha (temperature sampling), else in proportion to what is offered.
3. The total is `token_budget`, else everything offered; a unit's tokens are split
   among its sources in proportion to what they offer.
4. A source's rows are taken in whole passes, plus a seeded random part of one more
   pass, row by row until its token target is met (the granularity is one row).
5. The chosen rows are grouped in chunks (one pass over one Parquet row group); the
   chunks are ordered by seeded weighted sampling without replacement on `priority`
   (Apollo's data_priority), so high-priority sources tend to come first.
6. Consecutive chunks are read `shuffle_chunks` at a time and their rows shuffled
   together (a seeded shuffle buffer), so that neighbouring rows come from several
   sources while each row group is read once.

Everything depends only on the manifest, the row-token counts and the seed: the same
spec on the same prepared directory gives the same rows in the same order.
"""

from __future__ import annotations

import fnmatch
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from medbase_ray import storage
from medbase_ray.corpus.records import PACKED_ROW_SCHEMA
from medbase_ray.prepare.config import MixtureSpec


@dataclass
class SourceRows:
    """One prepared source: its shards, their row groups and each row's real tokens."""

    key: str
    source: str
    language: str
    # (shard path relative to the prepared dir, first row, rows) per row group
    row_groups: list[tuple[str, int, int]]
    tokens: np.ndarray  # n_real_tokens of every row, shards and row groups in order

    @property
    def total_tokens(self) -> int:
        return int(self.tokens.sum())


@dataclass
class Chunk:
    """Rows of one row group of one shard, in the order they are to be read."""

    key: str
    shard: str
    rows: list[int]  # row indices within the shard
    priority: float = 1.0


@dataclass
class MixturePlan:
    chunks: list[Chunk]
    report: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    shuffle_chunks: int = 1

    def units(self) -> list[dict[str, Any]]:
        """Read units: `shuffle_chunks` consecutive chunks each, with their seed."""
        step = self.shuffle_chunks
        return [
            {
                "shards": [c.shard for c in self.chunks[i : i + step]],
                "rows": [c.rows for c in self.chunks[i : i + step]],
                "seed": [self.seed, i // step],
            }
            for i in range(0, len(self.chunks), step)
        ]


def load_sources(prepared_dir: str, manifest: dict[str, Any]) -> list[SourceRows]:
    """Row-token counts and row groups of every source (reads one small column)."""
    out = []
    for key, entry in sorted(manifest["sources"].items()):
        groups: list[tuple[str, int, int]] = []
        tokens: list[np.ndarray] = []
        for shard in entry["shards"]:
            pf = storage.open_parquet(storage.join(prepared_dir, shard["path"]))
            start = 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                groups.append((shard["path"], start, n))
                start += n
            col = pf.read(columns=["n_real_tokens"])["n_real_tokens"]
            tokens.append(col.to_numpy().astype(np.int64))
        out.append(
            SourceRows(
                key,
                entry["source"],
                entry["language"],
                groups,
                np.concatenate(tokens) if tokens else np.zeros(0, np.int64),
            )
        )
    return out


def lookup(table: dict[str, float], src: SourceRows) -> float | None:
    """A source's value in a spec table: its full key, its bare source, or a glob."""
    if src.key in table:
        return table[src.key]
    if src.source in table:
        return table[src.source]
    for pattern, value in table.items():
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(src.key, pattern):
            return value
    return None


def _unmatched(table: dict[str, float], sources: list[SourceRows]) -> list[str]:
    names = {s.key for s in sources} | {s.source for s in sources}
    return sorted(
        k
        for k in table
        if k not in names and not any(fnmatch.fnmatchcase(s.key, k) for s in sources)
    )


def target_tokens(sources: list[SourceRows], spec: MixtureSpec) -> dict[str, float]:
    """Token target per source key (steps 1-3 of the module docstring)."""
    offered = {}
    for s in sources:
        epochs = lookup(spec.epochs, s)
        offered[s.key] = (1.0 if epochs is None else epochs) * s.total_tokens
    unit_of = {s.key: (s.language if spec.by == "language" else s.key) for s in sources}
    units: dict[str, float] = {}
    for s in sources:
        units[unit_of[s.key]] = units.get(unit_of[s.key], 0.0) + offered[s.key]
    if spec.weights:
        if spec.by == "language":
            raw = {u: spec.weights.get(u, 0.0) for u in units}
        else:
            by_key = {s.key: s for s in sources}
            raw = {u: lookup(spec.weights, by_key[u]) or 0.0 for u in units}
    elif spec.temperature_alpha is not None:
        raw = {u: n**spec.temperature_alpha if n > 0 else 0.0 for u, n in units.items()}
    else:
        raw = dict(units)
    norm = sum(raw.values())
    if norm <= 0:
        raise ValueError("the mixture selects nothing: every weighted source is empty")
    total = spec.token_budget if spec.token_budget is not None else sum(units.values())
    targets = {}
    for s in sources:
        u = unit_of[s.key]
        inside = offered[s.key] / units[u] if units[u] > 0 else 0.0
        targets[s.key] = total * raw[u] / norm * inside
    return targets


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def select_rows(src: SourceRows, target: float, seed: int) -> list[np.ndarray]:
    """Row indices (into src.tokens) per pass: whole passes, then a seeded part."""
    total = src.total_tokens
    if total <= 0 or target <= 0:
        return []
    full = int(target // total)
    rest = target - full * total
    rng = _rng(seed, src.key)
    order = rng.permutation(len(src.tokens))
    # Take rows while the running total's midpoint stays within the rest: the realised
    # tokens are within half a row of the target.
    cum = np.cumsum(src.tokens[order])
    take = int(np.searchsorted(cum - src.tokens[order] / 2, rest, side="right"))
    passes = [np.arange(len(src.tokens))] * full
    if take:
        passes.append(np.sort(order[:take]))
    return passes


def plan_mixture(sources: list[SourceRows], spec: MixtureSpec) -> MixturePlan:
    """The chunks to read, in order, and the report of realised shares."""
    targets = target_tokens(sources, spec)
    chunks: list[Chunk] = []
    realised: dict[str, dict[str, int]] = {}
    for src in sources:
        rng = _rng(spec.seed + 1, src.key)
        priority = lookup(spec.priority, src) or 1.0
        bounds = []  # (global first row, rows, shard, first row in shard) per row group
        at = 0
        for shard, start, n in src.row_groups:
            bounds.append((at, n, shard, start))
            at += n
        firsts = np.array([b[0] for b in bounds])
        passes = select_rows(src, targets[src.key], spec.seed)
        for rows in passes:
            group_of = np.searchsorted(firsts, rows, side="right") - 1
            for g in np.unique(group_of):
                first, _, shard, start = bounds[g]
                picked = rows[group_of == g]
                picked = rng.permutation(picked) - first + start
                chunks.append(Chunk(src.key, shard, picked.tolist(), priority))
        taken = sum(int(src.tokens[r].sum()) for r in passes)
        realised[src.key] = {"tokens": taken, "rows": sum(len(r) for r in passes)}
    # Weighted sampling without replacement (Efraimidis-Spirakis): key u^(1/w), largest
    # first; equal priorities give a uniform shuffle.
    if chunks:
        rng = np.random.default_rng(spec.seed)
        keys = rng.random(len(chunks)) ** (1.0 / np.array([c.priority for c in chunks]))
        chunks = [chunks[i] for i in np.argsort(-keys, kind="stable")]
    report = _report(sources, spec, targets, realised)
    return MixturePlan(chunks, report, spec.seed, spec.shuffle_chunks)


def _report(sources, spec, targets, realised) -> dict[str, Any]:
    total = sum(r["tokens"] for r in realised.values()) or 1
    total_target = sum(targets.values()) or 1
    by_source, by_language = {}, {}
    for s in sources:
        r = realised[s.key]
        by_source[s.key] = {
            "source": s.source,
            "language": s.language,
            "tokens": r["tokens"],
            "rows": r["rows"],
            "share": r["tokens"] / total,
            "target_share": targets[s.key] / total_target,
            "epochs": r["tokens"] / s.total_tokens if s.total_tokens else 0.0,
        }
        lang = by_language.setdefault(s.language, {"tokens": 0, "share": 0.0, "target_share": 0.0})
        lang["tokens"] += r["tokens"]
        lang["share"] += r["tokens"] / total
        lang["target_share"] += targets[s.key] / total_target
    unmatched = {
        name: _unmatched(getattr(spec, name), sources)
        for name in ("epochs", "priority") + (("weights",) if spec.by == "source" else ())
    }
    return {
        "total_tokens": sum(r["tokens"] for r in realised.values()),
        "rows": sum(r["rows"] for r in realised.values()),
        "seed": spec.seed,
        "by": spec.by,
        "languages": by_language,
        "sources": by_source,
        "unmatched_keys": {k: v for k, v in unmatched.items() if v},
    }


def read_chunk(prepared_dir: str, shard: str, rows: list[int]) -> pa.Table:
    """The rows of one chunk, in the chunk's order, in the packed-row contract."""
    pf = storage.open_parquet(storage.join(prepared_dir, shard))
    # Read only the row groups the rows fall in (a chunk is within one).
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    groups = sorted({int(np.searchsorted(starts, r, side="right") - 1) for r in rows})
    table = pf.read_row_groups(groups, columns=PACKED_ROW_SCHEMA.names)
    offset = int(starts[groups[0]])
    # Row groups of a chunk are contiguous, so the offset maps rows into the table.
    return table.take(pa.array([r - offset for r in rows])).cast(PACKED_ROW_SCHEMA)


def read_unit(
    prepared_dir: str, shards: list[str], rows: list[list[int]], seed: list[int]
) -> pa.Table:
    """The rows of a read unit's chunks, shuffled together (seeded)."""
    table = pa.concat_tables(
        [read_chunk(prepared_dir, s, r) for s, r in zip(shards, rows, strict=True)]
    )
    order = np.random.default_rng(seed).permutation(table.num_rows)
    return table.take(pa.array(order))


def iter_mixture_tables(prepared_dir: str, plan: MixturePlan) -> Iterator[pa.Table]:
    """The plan's rows unit by unit, in one process (what the Ray layer distributes)."""
    for unit in plan.units():
        yield read_unit(prepared_dir, unit["shards"], unit["rows"], unit["seed"])
