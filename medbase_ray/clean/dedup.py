"""Keep one record per duplicate key, deterministically (no Ray).

A record gives one exact key (a hash of its normalised text) and one key per LSH band.
Records that share a key are duplicates (exact) or near-duplicate candidates (a band);
of each group the record of lowest `rank` is kept, and the others are removed, each
naming the record it duplicates: exact duplicates always, candidates when their MinHash
estimate of Jaccard with the kept record reaches the threshold (`verified`). Candidates
are compared with their group's kept record only (not with each other): a bucket costs
as many comparisons as members. The rank is a hash of (source, id): the same record is
kept on every run, whatever the file order, the worker count or the partitioning, and
no source is favoured. A record is removed when it loses in any of its groups.

Keys are hash-partitioned (`partition_of`), so each partition is decided alone and a
worker holds 1/partitions of the keys: memory does not grow with the number of workers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

EXACT, NEAR = 0, 1
REASONS = {EXACT: "exact_duplicate", NEAR: "near_duplicate"}
KEY_SCHEMA = pa.schema(
    [
        ("key", pa.uint64()),
        ("kind", pa.int8()),
        ("rank", pa.uint64()),
        ("shard", pa.string()),
        ("row", pa.int32()),
        ("id", pa.string()),
    ]
)
DUP_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("row", pa.int32()),
        ("kind", pa.int8()),
        ("kept_id", pa.string()),
        ("kept_shard", pa.string()),
        ("kept_row", pa.int32()),
    ]
)


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each key (uint64 -> int64 in [0, partitions))."""
    return (keys % np.uint64(partitions)).astype(np.int64)


def find_duplicates(keys: pa.Table) -> pa.Table:
    """KEY_SCHEMA rows of one partition -> DUP_SCHEMA rows: every record that is not the
    lowest-ranked of its key's group (ties broken by shard and row)."""
    if keys.num_rows == 0:
        return DUP_SCHEMA.empty_table()
    keys = keys.sort_by(
        [("key", "ascending"), ("rank", "ascending"), ("shard", "ascending"), ("row", "ascending")]
    )
    key = keys["key"].to_numpy()
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    head = np.maximum.accumulate(np.where(first, np.arange(len(key)), 0))
    dup = np.flatnonzero(~first)
    return pa.table(
        {
            "shard": keys["shard"].take(dup),
            "row": keys["row"].take(dup),
            "kind": keys["kind"].take(dup),
            "kept_id": keys["id"].take(head[dup]),
            "kept_shard": keys["shard"].take(head[dup]),
            "kept_row": keys["row"].take(head[dup]),
        },
        schema=DUP_SCHEMA,
    )


def verified(dups: pa.Table, signatures: np.ndarray, threshold: float) -> np.ndarray:
    """Which DUP_SCHEMA rows of one shard stand: exact duplicates, and near-duplicate
    candidates whose MinHash estimate of Jaccard with the kept record (`kept_signature`)
    reaches the threshold. `signatures`: the shard's (rows, num_perm) signatures."""
    kind = dups["kind"].to_numpy()
    ok = kind == EXACT
    near = np.flatnonzero(~ok)
    if len(near):
        mine = signatures[dups["row"].to_numpy()[near]]
        theirs = np.stack(dups["kept_signature"].to_numpy(zero_copy_only=False)[near])
        ok[near] = (mine == theirs).mean(axis=1) >= threshold
    return ok


def resolve_duplicates(dups: pa.Table) -> dict[int, tuple[str, str]]:
    """Standing duplicate rows of one shard -> row -> (reason, kept id): an exact
    duplicate before a near one, then the lowest kept id (the same on every run)."""
    out: dict[int, tuple[int, str]] = {}
    for row, kind, kept in zip(
        dups["row"].to_pylist(), dups["kind"].to_pylist(), dups["kept_id"].to_pylist(), strict=True
    ):
        if row not in out or (kind, kept) < out[row]:
            out[row] = (kind, kept)
    return {row: (REASONS[kind], kept) for row, (kind, kept) in out.items()}
