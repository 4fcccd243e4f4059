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


# The reason of each row in finish_shard, in order of precedence (a row removed as
# contaminated gave no dedup keys; an invalid one has no text).
KEPT, INVALID, CONTAMINATED, DUPLICATE = 0, 1, 2, 3
_COUNTED = ("contaminated", "invalid", "removed_contaminated", "exact_duplicate")
_COUNTED += ("near_duplicate", "kept")


def finish_shard(work: str, out: str, shard: str, flag_only: bool, threshold: float) -> dict:
    """Pass 3: kept rows to conversations/, removed ones to rejects/ with the reason;
    returns counts per `source/language` and the benchmark items matched. Column
    operations throughout: only the shard's duplicates are looked at one by one."""
    path = storage.join(work, "records", f"{shard}.parquet")
    dup_files = storage.list_files(storage.join(work, "dups", shard), ".parquet")
    columns = REJECT_SCHEMA.names[:3] + ["turns", "file", "index", "reject", "match_item"]
    columns += ["match_field", "match_ngram", "matched_items", "removed_contaminated"]
    rows = storage.read_parquet(path, columns + (["signature"] if dup_files else []))
    n = rows.num_rows
    dup_reason: list[str | None] = [None] * n
    kept_id: list[str | None] = [None] * n
    if dup_files:
        found = pa.concat_tables(storage.read_parquet(f) for f in dup_files)
        signatures = rows["signature"].to_numpy(zero_copy_only=False)
        width = max((len(x) for x in signatures), default=0)
        matrix = np.stack([x if len(x) else np.zeros(width, np.uint32) for x in signatures])
        dups = resolve_duplicates(found.filter(pa.array(verified(found, matrix, threshold))))
        for row, (reason, kept) in dups.items():
            dup_reason[row], kept_id[row] = reason, kept
    invalid = pc.is_valid(rows["reject"]).to_numpy(zero_copy_only=False)
    matched = pc.is_valid(rows["match_item"]).to_numpy(zero_copy_only=False)
    removed_c = rows["removed_contaminated"].to_numpy(zero_copy_only=False)
    is_dup = np.array([r is not None for r in dup_reason], bool)
    status = np.select(
        [invalid, removed_c, is_dup], [INVALID, CONTAMINATED, DUPLICATE], default=KEPT
    )
    reason = np.where(status == DUPLICATE, np.array(dup_reason, object), None)
    reason[status == INVALID] = "invalid"
    reason[status == CONTAMINATED] = "contaminated"

    masks = {
        "contaminated": matched,
        "invalid": status == INVALID,
        "removed_contaminated": status == CONTAMINATED,
        "exact_duplicate": reason == "exact_duplicate",
        "near_duplicate": reason == "near_duplicate",
        "kept": status == KEPT,
    }
    counts = _counts_by_key(rows, masks)
    items = {
        x["values"]: x["counts"]
        for x in pc.value_counts(pc.list_flatten(rows["matched_items"])).to_pylist()
    }

    kept_mask = pa.array(status == KEPT)
    rejects = _rejects(rows, reason, kept_id).filter(pa.array(status != KEPT))
    flagged = _rejects(rows, np.where(matched, "contaminated", None), [None] * n)
    flagged = flagged.filter(pa.array(matched & (status == KEPT) & flag_only))
    kept = rows.filter(kept_mask).select(CONVERSATION_SCHEMA.names).cast(CONVERSATION_SCHEMA)
    for name, table in (("conversations", kept), ("rejects", rejects), ("flagged", flagged)):
        if table.num_rows:
            storage.write_parquet(
                storage.join(out, name, f"{shard}.parquet"), table, ROW_GROUP_ROWS
            )
    return {"shard": shard, "counts": json.dumps(counts), "items": json.dumps(items)}


def _counts_by_key(rows: pa.Table, masks: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Per `source/language` ("?" for an unreadable row's): "in" and each mask's count."""
    keys = pc.binary_join_element_wise(
        pc.fill_null(rows["source"], "?"), pc.fill_null(rows["language"], "?"), "/"
    )
    encoded = pc.dictionary_encode(keys).combine_chunks()
    names = encoded.dictionary.to_pylist()
    which = encoded.indices.to_numpy(zero_copy_only=False)
    counts = {name: {"in": int(c)} for name, c in zip(names, np.bincount(which), strict=True)}
    for col, mask in masks.items():
        for k, c in enumerate(np.bincount(which[mask], minlength=len(names))):
            if c:
                counts[names[k]][col] = int(c)
    return counts


def _rejects(rows: pa.Table, reason: np.ndarray, kept_id: list[str | None]) -> pa.Table:
    """A REJECT_SCHEMA row per row of `rows` (filtered by the caller)."""
    invalid = pc.is_valid(rows["reject"])
    return pa.table(
        {
            "id": rows["id"],
            "source": rows["source"],
            "language": rows["language"],
            "reason": pa.array(reason, pa.string()),
            "benchmark_item": rows["match_item"],
            "field": rows["match_field"],
            "ngram": rows["match_ngram"],
            "matched_items": rows["matched_items"],
            "kept_id": pa.array(kept_id, pa.string()),
            "file": rows["file"],
            "index": rows["index"],
            "detail": pc.if_else(invalid, rows["reject"], pa.scalar(None, pa.string())),
        },
        schema=REJECT_SCHEMA,
    )
