"""The clean stage's files, one shard (a batch of input rows) at a time (no Ray).

    work/records/{shard}.parquet        annotated rows (batch.annotate_batch)
    work/keys/p{p}/{shard}.parquet      dedup keys of partition p (dedup.KEY_SCHEMA)
    work/cand/{shard}/p{p}.parquet      near-dup candidates of partition p whose kept record
                                        is in {shard} (dedup.DUP_SCHEMA)
    work/dups/{shard}/*.parquet         duplicates of {shard}'s rows (+ kept_signature)
    conversations/{shard}.parquet       kept records (conversation contract)
    rejects/{shard}.parquet             removed records with the reason (REJECT_SCHEMA)
    flagged/{shard}.parquet             contaminated records kept (action: flag)

Pass 1 writes the annotated shard and its keys; pass 2 decides each key partition;
pass 2b gives each near-dup candidate its kept record's signature; pass 3 verifies the
candidates and splits each shard into kept and rejected rows. Every function holds one
shard or one key partition, never the corpus.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medbase_ray import storage
from medbase_ray.clean.dedup import (
    EXACT,
    KEY_SCHEMA,
    NEAR,
    find_duplicates,
    partition_of,
    resolve_duplicates,
    verified,
)
from medbase_ray.corpus.records import CONVERSATION_SCHEMA

ROW_GROUP_ROWS = 1024
REJECT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("language", pa.string()),
        # contaminated | exact_duplicate | near_duplicate | invalid
        ("reason", pa.string()),
        ("benchmark_item", pa.string()),
        ("field", pa.string()),
        ("ngram", pa.string()),
        ("matched_items", pa.list_(pa.string())),
        ("kept_id", pa.string()),  # the record a duplicate duplicates
        ("file", pa.string()),
        ("index", pa.int64()),
        ("detail", pa.string()),  # invalid rows: the reader's reject (JSON)
    ]
)


def shard_name(rows: pa.Table) -> str:
    """A name that depends only on the rows' origin (the same on every run): a hash of
    the file and index of its first and last rows and its row count."""
    ends = [f"{rows['file'][i].as_py()}:{rows['index'][i].as_py()}" for i in (0, -1)]
    origin = f"{ends[0]}|{ends[1]}|{rows.num_rows}"
    return hashlib.blake2b(origin.encode(), digest_size=8).hexdigest()


def write_annotated(rows: pa.Table, work: str, partitions: int) -> dict:
    """Pass 1: the annotated shard and its dedup keys, by partition. Contaminated rows
    that will be removed give no keys (`rows` holds `removed_contaminated`)."""
    shard = shard_name(rows)
    storage.write_parquet(storage.join(work, "records", f"{shard}.parquet"), rows, ROW_GROUP_ROWS)
    deduped = np.flatnonzero(
        (pc.is_null(rows["reject"]).to_numpy(zero_copy_only=False))
        & ~rows["removed_contaminated"].to_numpy(zero_copy_only=False)
        & (pc.list_value_length(rows["band_keys"]).to_numpy(zero_copy_only=False) > 0)
    )
    if len(deduped):
        sub = rows.take(pa.array(deduped))
        n_bands = len(sub["band_keys"][0])
        keys = np.concatenate(
            [sub["exact_key"].to_numpy(), pc.list_flatten(sub["band_keys"]).to_numpy()]
        )
        kinds = np.repeat([EXACT, NEAR], [len(deduped), len(deduped) * n_bands])
        which = np.concatenate(
            [np.arange(len(deduped)), np.repeat(np.arange(len(deduped)), n_bands)]
        )
        table = pa.table(
            {
                "key": keys,
                "kind": kinds.astype(np.int8),
                "rank": sub["rank"].to_numpy()[which],
                "shard": pa.array([shard] * len(keys)),
                "row": deduped[which].astype(np.int32),
                "id": sub["id"].take(pa.array(which)),
            },
            schema=KEY_SCHEMA,
        )
        part = partition_of(keys, partitions)
        for p in np.unique(part):
            path = storage.join(work, "keys", f"p{p}", f"{shard}.parquet")
            storage.write_parquet(path, table.filter(pa.array(part == p)), ROW_GROUP_ROWS * 16)
    return {"shard": shard, "rows": rows.num_rows}


def decide_partition(work: str, partition: int) -> int:
    """Pass 2: the duplicate groups among partition `partition`'s keys. Exact duplicates
    go to work/dups/{their shard}/; near-duplicate candidates to work/cand/{the kept
    record's shard}/, to fetch its signature there (`attach_signatures`)."""
    files = storage.list_files(storage.join(work, "keys", f"p{partition}"), ".parquet")
    if not files:
        return 0
    dups = find_duplicates(pa.concat_tables(storage.read_parquet(f) for f in files))
    exact = dups.filter(pc.equal(dups["kind"], EXACT))
    _write_grouped(
        exact.append_column("kept_signature", pa.nulls(exact.num_rows, _SIG)),
        "shard",
        storage.join(work, "dups"),
        f"p{partition}",
    )
    near = dups.filter(pc.equal(dups["kind"], NEAR))
    _write_grouped(near, "kept_shard", storage.join(work, "cand"), f"p{partition}")
    return dups.num_rows


def attach_signatures(work: str, shard: str) -> int:
    """Pass 2b: the candidates whose kept record is in `shard` get its signature and
    go to work/dups/{the candidate's shard}/."""
    files = storage.list_files(storage.join(work, "cand", shard), ".parquet")
    if not files:
        return 0
    cand = pa.concat_tables(storage.read_parquet(f) for f in files)
    sigs = storage.read_parquet(storage.join(work, "records", f"{shard}.parquet"), ["signature"])
    kept = sigs["signature"].take(cand["kept_row"])
    _write_grouped(
        cand.append_column("kept_signature", kept), "shard", storage.join(work, "dups"), f"c{shard}"
    )
    return cand.num_rows


_SIG = pa.list_(pa.uint32())


def _write_grouped(table: pa.Table, column: str, root: str, name: str) -> None:
    """`table`'s rows to {root}/{value of column}/{name}.parquet, one file per value."""
    values = table[column].to_numpy(zero_copy_only=False)
    for value in np.unique(values):
        path = storage.join(root, str(value), f"{name}.parquet")
        storage.write_parquet(path, table.filter(pa.array(values == value)), ROW_GROUP_ROWS * 16)


def finish_shard(work: str, out: str, shard: str, flag_only: bool, threshold: float) -> dict:
    """Pass 3: kept rows to conversations/, removed ones to rejects/ with the reason;
    returns counts per `source/language` and the benchmark items matched."""
    rows = storage.read_parquet(storage.join(work, "records", f"{shard}.parquet"))
    dups: dict[int, tuple[str, str]] = {}
    dup_files = storage.list_files(storage.join(work, "dups", shard), ".parquet")
    if dup_files:
        found = pa.concat_tables(storage.read_parquet(f) for f in dup_files)
        signatures = rows["signature"].to_numpy(zero_copy_only=False)
        width = max((len(x) for x in signatures), default=0)
        matrix = np.stack([x if len(x) else np.zeros(width, np.uint32) for x in signatures])
        dups = resolve_duplicates(found.filter(pa.array(verified(found, matrix, threshold))))
    rows = rows.drop_columns(["signature", "band_keys"])
    counts: dict[str, Counter] = {}
    items: Counter = Counter()
    kept, rejects, flagged = [], [], []
    for i, r in enumerate(rows.to_pylist()):
        key = f"{r['source'] or '?'}/{r['language'] or '?'}"  # "?": an unreadable row
        c = counts.setdefault(key, Counter())
        c["in"] += 1
        items.update(r["matched_items"])
        if r["match_item"] is not None:
            c["contaminated"] += 1
        if r["reject"] is not None:
            c["invalid"] += 1
            rejects.append(_reject(r, "invalid", detail=r["reject"]))
        elif r["removed_contaminated"]:
            c["removed_contaminated"] += 1
            rejects.append(_reject(r, "contaminated"))
        elif i in dups:
            reason, kept_id = dups[i]
            c[reason] += 1
            rejects.append(_reject(r, reason, kept_id=kept_id))
        else:
            c["kept"] += 1
            kept.append({k: r[k] for k in CONVERSATION_SCHEMA.names})
            if r["match_item"] is not None and flag_only:
                flagged.append(_reject(r, "contaminated"))
    for name, data, schema in (
        ("conversations", kept, CONVERSATION_SCHEMA),
        ("rejects", rejects, REJECT_SCHEMA),
        ("flagged", flagged, REJECT_SCHEMA),
    ):
        if data:
            table = pa.Table.from_pylist(data, schema=schema)
            storage.write_parquet(
                storage.join(out, name, f"{shard}.parquet"), table, ROW_GROUP_ROWS
            )
    return {"shard": shard, "counts": json.dumps(counts), "items": json.dumps(items)}


def _reject(r: dict, reason: str, kept_id: str | None = None, detail: str | None = None) -> dict:
    return {
        "id": r["id"],
        "source": r["source"],
        "language": r["language"],
        "reason": reason,
        "benchmark_item": r["match_item"],
        "field": r["match_field"],
        "ngram": r["match_ngram"],
        "matched_items": r["matched_items"],
        "kept_id": kept_id,
        "file": r["file"],
        "index": r["index"],
        "detail": detail,
    }
