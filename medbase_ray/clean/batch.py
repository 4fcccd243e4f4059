"""What the clean stage computes for a batch of conversation rows (no Ray).

    annotated = annotate_batch(rows, index, settings)

`rows` are conversation stream rows (prepare.stream.CONVERSATION_STREAM_SCHEMA: id,
source, language, turns, file, index, reject). Each good row gets its first benchmark
match (item, field, n-gram), the items it matches, its exact-duplicate key, its LSH band
keys and its rank (which of a duplicate group is kept). Rows already rejected by the
reader pass through with empty keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medbase_ray.clean.index import BenchmarkIndex
from medbase_ray.clean.minhash import band_keys, dedup_signatures
from medbase_ray.clean.text import fold, stable_hash64, strip_punctuation

MAX_ITEMS_LISTED = 8
ANNOTATIONS = [
    ("match_item", pa.string()),
    ("match_field", pa.string()),
    ("match_ngram", pa.string()),
    ("matched_items", pa.list_(pa.string())),
    ("exact_key", pa.uint64()),
    ("band_keys", pa.list_(pa.uint64())),
    ("rank", pa.uint64()),
    ("signature", pa.list_(pa.uint32())),
    ("removed_contaminated", pa.bool_()),
]


@dataclass(frozen=True)
class DedupSettings:
    enabled: bool
    num_perm: int
    shingle_chars: int
    bands: int
    rows: int
    seed: int


def record_text(turns: list[str]) -> str:
    """The text a conversation is checked on: every turn, user's and assistant's."""
    return "\n".join(turns)


def annotate_batch(
    rows: pa.Table, index: BenchmarkIndex | None, dedup: DedupSettings, remove: bool = True
) -> pa.Table:
    """`rows` plus the ANNOTATIONS columns; `remove`: contaminated rows are to be removed
    (else only flagged)."""
    n = rows.num_rows
    good = np.flatnonzero(pc.is_null(rows["reject"]).to_numpy(zero_copy_only=False))
    turns = rows["turns"].to_pylist()
    texts = [record_text(turns[i]) for i in good]
    languages = rows["language"].to_pylist()
    match_item: list[str | None] = [None] * n
    match_field: list[str | None] = [None] * n
    match_ngram: list[str | None] = [None] * n
    matched: list[list[str]] = [[] for _ in range(n)]
    folded = [fold(t) for t in texts]  # NFKC + casefold once, for both checks
    if index is not None and len(good):
        norm = [strip_punctuation(f) for f in folded]
        found = index.find_normalized(norm, [languages[i] for i in good])
        for i, matches in zip(good, found, strict=True):
            if matches:
                match_item[i], match_field[i] = matches[0].item_id, matches[0].field
                match_ngram[i] = matches[0].ngram
                matched[i] = list(dict.fromkeys(m.item_id for m in matches))[:MAX_ITEMS_LISTED]
    exact = np.zeros(n, np.uint64)
    bands: list[list[int]] = [[] for _ in range(n)]
    rank = np.zeros(n, np.uint64)
    sig_lengths = np.zeros(n, np.int32)
    sig_values = np.zeros(0, np.uint32)
    if dedup.enabled and len(good):
        dedup_texts = [" ".join(f.split()) for f in folded]  # text.dedup_text
        exact[good] = stable_hash64(dedup_texts)
        sigs = dedup_signatures(dedup_texts, dedup.num_perm, dedup.shingle_chars, dedup.seed)
        keys = band_keys(sigs, dedup.bands, dedup.rows)
        sig_lengths[good] = dedup.num_perm
        sig_values = sigs.ravel()
        for i, k in zip(good, keys.tolist(), strict=True):
            bands[i] = k
        ids, sources = rows["id"].to_pylist(), rows["source"].to_pylist()
        rank[good] = stable_hash64([f"{sources[i]}\0{ids[i]}" for i in good])
    removed = [remove and m is not None for m in match_item]
    offsets = np.concatenate([[0], np.cumsum(sig_lengths)]).astype(np.int32)
    signature = pa.ListArray.from_arrays(pa.array(offsets), pa.array(sig_values, pa.uint32()))
    columns = [match_item, match_field, match_ngram, matched, exact, bands, rank, signature]
    columns.append(removed)
    for (name, dtype), values in zip(ANNOTATIONS, columns, strict=True):
        array = values if isinstance(values, pa.Array) else pa.array(values, dtype)
        rows = rows.append_column(name, array)
    return rows
