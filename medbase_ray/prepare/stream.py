"""The prepare stream as plain functions on Arrow tables (the Ray layer maps them).

    files -> inputs.read_conversation_file -> tokenize_table -> pack_table -> packed rows

Rejected inputs travel in the same stream as rows with a `reject` (JSON: file, index,
field, reason, raw, source, language, kind) and empty token lists, so that the sink
writes them beside the output and every count adds up: read = samples + dropped +
rejected.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyarrow as pa

from medbase_ray.corpus.records import PACKED_ROW_SCHEMA
from medbase_ray.corpus.rejects import raw_snippet
from medbase_ray.prepare.packing import assemble_rows, pack_in_windows
from medbase_ray.prepare.tokenization import tokenize_conversations, tokenizer_from_spec

CONVERSATION_STREAM_SCHEMA = pa.schema(
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
TOKENIZED_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("language", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("truncated", pa.bool_()),
        ("reject", pa.string()),
    ]
)
# Packed rows plus what the manifest counts; the sink writes PACKED_ROW_SCHEMA only.
PACKED_STREAM_SCHEMA = pa.schema(
    list(PACKED_ROW_SCHEMA)
    + [("n_samples", pa.int32()), ("n_truncated", pa.int32()), ("reject", pa.string())]
)


def source_key(source: str, language: str) -> str:
    """The name of a prepared source: Apollo's `{source}_{language}` (`medicalExam_en`)."""
    return f"{source}_{language}"


def source_dir_name(key: str) -> str:
    """A directory name for a source key (characters outside [A-Za-z0-9._-] become -)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", key) or "-"


def reject_json(
    file: str,
    index: int | None,
    field: str,
    reason: str,
    raw: Any = "",
    source: str | None = None,
    language: str | None = None,
    kind: str = "rejected",
) -> str:
    return json.dumps(
        {
            "file": file,
            "index": index,
            "field": field,
            "reason": reason,
            "raw": raw_snippet(raw) if raw != "" else "",
            "source": source,
            "language": language,
            "kind": kind,
        },
        ensure_ascii=False,
    )


# -- tokenize -----------------------------------------------------------------------


def _list_array(arrays: list[np.ndarray]) -> pa.ListArray:
    """int32 numpy arrays -> one Arrow list<int32> column, without Python lists."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int32, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.int32)))


def tokenize_table(
    table: pa.Table, tokenizer, chat_format: str, seq_len: int, overlong: str
) -> pa.Table:
    """Conversation stream rows -> tokenized samples (TOKENIZED_SCHEMA); rejects pass on."""
    cols = table.select(["source", "language", "turns", "file", "index", "reject"]).to_pydict()
    good = [i for i, r in enumerate(cols["reject"]) if r is None]
    samples = tokenize_conversations(
        tokenizer, [cols["turns"][i] for i in good], chat_format, seq_len, overlong
    )
    by_row = dict(zip(good, samples, strict=True))
    empty = np.zeros(0, dtype=np.int32)
    ids, labels, truncated, rejects = [], [], [], []
    for i in range(table.num_rows):
        sample = by_row.get(i)
        reject = cols["reject"][i]
        if sample is not None and sample.reject is not None:
            reject = reject_json(
                cols["file"][i],
                cols["index"][i],
                *sample.reject,
                cols["turns"][i],
                cols["source"][i],
                cols["language"][i],
                kind="dropped" if sample.dropped else "rejected",
            )
        ok = reject is None
        ids.append(sample.input_ids if ok else empty)
        labels.append(sample.labels if ok else empty)
        truncated.append(bool(ok and sample.truncated))
        rejects.append(reject)
    return pa.table(
        {
            "source": table["source"],
            "language": table["language"],
            "input_ids": _list_array(ids),
            "labels": _list_array(labels),
            "truncated": pa.array(truncated, pa.bool_()),
            "reject": pa.array(rejects, pa.string()),
        },
        schema=TOKENIZED_SCHEMA,
    )


def tokenize_in_batches(
    table: pa.Table, tokenizer: dict[str, Any], batch_size: int, **kwargs: Any
) -> pa.Table:
    """tokenize_table over `batch_size` rows at a time, with the tokenizer rebuilt (once
    per process) from `tokenization.worker_tokenizer_spec`."""
    tok = tokenizer_from_spec(tokenizer)
    return pa.concat_tables(
        [
            tokenize_table(table.slice(i, batch_size), tok, **kwargs)
            for i in range(0, max(table.num_rows, 1), batch_size)
        ]
    )


# -- pack ---------------------------------------------------------------------------


def _split_list_column(col: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(arr))]


def _fixed_lists(matrix: np.ndarray) -> pa.ListArray:
    rows, seq_len = matrix.shape
    offsets = np.arange(0, (rows + 1) * seq_len, seq_len, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.reshape(-1)))


def pack_table(
    table: pa.Table, seq_len: int, packing: str, pad_id: int, window: int | None = None
) -> pa.Table:
    """Tokenized samples -> packed rows (PACKED_STREAM_SCHEMA), per (source, language):
    a row never mixes sources. Each source's samples are packed `window` at a time (all
    at once when None). Reject rows pass on unchanged."""
    cols = table.select(["source", "language", "truncated", "reject"]).to_pydict()
    ids = _split_list_column(table["input_ids"])
    labels = _split_list_column(table["labels"])
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (s, lang, rej) in enumerate(
        zip(cols["source"], cols["language"], cols["reject"], strict=True)
    ):
        if rej is None:
            groups.setdefault((s, lang), []).append(i)
    parts: list[pa.Table] = []
    for (source, language), members in groups.items():
        bins = pack_in_windows([len(ids[i]) for i in members], seq_len, packing, window)
        rows = assemble_rows(
            [ids[i] for i in members], [labels[i] for i in members], bins, seq_len, pad_id
        )
        n_truncated = [sum(cols["truncated"][members[j]] for j in b) for b in bins]
        n = len(bins)
        parts.append(
            pa.table(
                {
                    "input_ids": _fixed_lists(rows["input_ids"]),
                    "labels": _fixed_lists(rows["labels"]),
                    "position_ids": _fixed_lists(rows["position_ids"]),
                    "source": pa.array([source] * n, pa.string()),
                    "language": pa.array([language] * n, pa.string()),
                    "n_real_tokens": pa.array(rows["n_real_tokens"]),
                    "n_samples": pa.array(rows["n_samples"]),
                    "n_truncated": pa.array(n_truncated, pa.int32()),
                    "reject": pa.nulls(n, pa.string()),
                },
                schema=PACKED_STREAM_SCHEMA,
            )
        )
    rejected = [i for i, r in enumerate(cols["reject"]) if r is not None]
    if rejected:
        n = len(rejected)
        empty_lists = pa.array([[]] * n, pa.list_(pa.int32()))
        parts.append(
            pa.table(
                {
                    "input_ids": empty_lists,
                    "labels": empty_lists,
                    "position_ids": empty_lists,
                    "source": pa.array([cols["source"][i] for i in rejected], pa.string()),
                    "language": pa.array([cols["language"][i] for i in rejected], pa.string()),
                    "n_real_tokens": pa.array([0] * n, pa.int32()),
                    "n_samples": pa.array([0] * n, pa.int32()),
                    "n_truncated": pa.array([0] * n, pa.int32()),
                    "reject": pa.array([cols["reject"][i] for i in rejected], pa.string()),
                },
                schema=PACKED_STREAM_SCHEMA,
            )
        )
    if not parts:
        return PACKED_STREAM_SCHEMA.empty_table()
    return pa.concat_tables(parts)


def pack_conversations(
    tokenizer,
    turns: list[list[str]],
    seq_len: int,
    packing: str = "best_fit",
    chat_format: str = "apollo",
    source: str = "sample",
    language: str = "en",
) -> pa.Table:
    """Conversations -> packed rows (PACKED_ROW_SCHEMA) in this process, by the stage's
    own functions (no Ray): for tests and benchmarks of what comes after prepare.
    Conversations that would be rejected are left out."""
    samples = [
        s for s in tokenize_conversations(tokenizer, turns, chat_format, seq_len) if not s.reject
    ]
    bins = pack_in_windows([len(s.input_ids) for s in samples], seq_len, packing)
    rows = assemble_rows(
        [s.input_ids for s in samples],
        [s.labels for s in samples],
        bins,
        seq_len,
        tokenizer.pad_token_id,
    )
    n = len(bins)
    return pa.table(
        {
            **{k: _fixed_lists(rows[k]) for k in ("input_ids", "labels", "position_ids")},
            "source": [source] * n,
            "language": [language] * n,
            "n_real_tokens": rows["n_real_tokens"],
        },
        schema=PACKED_ROW_SCHEMA,
    )
