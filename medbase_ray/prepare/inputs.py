"""Inputs of the prepare stream: conversation files (and `datasets` rows) as Arrow
tables in CONVERSATION_STREAM_SCHEMA, bad rows as reject rows with the reason."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from medbase_ray.corpus.languages import LANGUAGES, language_of_source
from medbase_ray.corpus.origin import is_kind, origin_of
from medbase_ray.corpus.readers import CorpusReader, list_input_files
from medbase_ray.corpus.records import check_turns
from medbase_ray.corpus.rejects import CorpusError, Reject
from medbase_ray.prepare.stream import CONVERSATION_STREAM_SCHEMA, reject_json

HF_PREFIX = "hf:"


def list_conversation_files(inputs: Iterable[str | Path]) -> list[str]:
    """The conversation files of `inputs` (files or directories, read recursively).

    ApolloCorpus JSON files of another type (`*_text.json`) are skipped in directories
    and an error when named; merged files (`mixTrain.json`) are read by member.
    """
    files: list[str] = []
    for item in inputs:
        root = Path(item)
        for path in list_input_files(root, "conversation"):
            origin = origin_of(path)
            if not root.is_dir() and origin.named and not is_kind(origin.type, "conversation"):
                raise CorpusError(str(path), None, "<file name>", "not a conversation file")
            files.append(str(path))
    return files


def group_files(files: list[str], bytes_per_group: int) -> list[list[str]]:
    """Files in groups of about `bytes_per_group` (one Ray read task each), files of one
    source and language together so that they are packed together; largest groups
    first. A file larger than a group is a group of its own: its reader streams it in
    blocks (`iter_conversation_blocks`) that other tasks tokenize and pack."""

    def key(path: str) -> tuple[str, str]:
        origin = origin_of(Path(path))
        if origin.named:
            return (origin.source or "", origin.language or "")
        return ("~", "")  # JSONL / Parquet / merged files may mix sources: after the others

    groups: list[list[str]] = []
    sizes: list[int] = []
    last = None
    for path in sorted(files, key=lambda f: (key(f), f)):
        n = Path(path).stat().st_size
        if not groups or key(path) != last or sizes[-1] + n > bytes_per_group:
            groups.append([])
            sizes.append(0)
        groups[-1].append(path)
        sizes[-1] += n
        last = key(path)
    # Largest first, so that the last tasks to start are short ones and no worker waits
    # long on a straggler at the end (longest-processing-time-first scheduling).
    order = sorted(range(len(groups)), key=lambda i: -sizes[i])
    return [groups[i] for i in order]


def iter_conversation_blocks(
    paths: list[str],
    block_chars: int,
    source: str | None = None,
    language: str | None = None,
) -> Iterator[pa.Table]:
    """Input files -> tables of conversation rows and reject rows
    (CONVERSATION_STREAM_SCHEMA), one every `block_chars` characters of turns, as the
    files are read (a file of any size is held one block at a time)."""
    pending: list[Reject] = []
    reader = CorpusReader("reject", pending.append, source, language)
    columns: dict[str, list] = {name: [] for name in CONVERSATION_STREAM_SCHEMA.names}
    chars = 0
    for path in paths:
        origin = origin_of(Path(path), source, language)
        for r in reader.iter_file(Path(path), "conversation", explicit=False):
            if pending:
                _add_rejects(columns, pending, origin.source, origin.language)
            for name in ("id", "source", "language", "turns"):
                columns[name].append(r[name])
            columns["file"].append(path)
            columns["index"].append(_index_of(r["id"]))
            columns["reject"].append(None)
            chars += sum(map(len, r["turns"]))
            if chars >= block_chars:
                yield pa.table(columns, schema=CONVERSATION_STREAM_SCHEMA)
                columns = {name: [] for name in CONVERSATION_STREAM_SCHEMA.names}
                chars = 0
        _add_rejects(columns, pending, origin.source, origin.language)
    if columns["file"]:
        yield pa.table(columns, schema=CONVERSATION_STREAM_SCHEMA)


def _add_rejects(
    columns: dict[str, list], pending: list[Reject], source: str | None, language: str | None
) -> None:
    """The stream rows of the rejects collected so far (the list is emptied)."""
    for rej in pending:
        row = {"id": None, "source": source, "language": language, "turns": []}
        row |= {"file": rej.file, "index": rej.index}
        row["reject"] = reject_json(
            rej.file, rej.index, rej.field, rej.reason, rej.raw, source, language
        )
        for name, value in row.items():
            columns[name].append(value)
    pending.clear()


def _index_of(record_id: str) -> int | None:
    tail = record_id.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


def check_conversation_rows(rows: list[dict[str, Any]], origin: str) -> pa.Table:
    """Rows in the conversation contract from elsewhere (a `datasets` dataset), checked
    like the readers check files; bad rows become reject rows."""
    out = []
    for row in rows:
        index = row.get("__index")
        source = row.get("source")
        language = row.get("language") or (language_of_source(str(source)) if source else None)
        problem = None
        if not source:
            problem = ("source", "missing")
        elif language not in LANGUAGES:
            problem = ("language", f"unknown language {language!r}")
        else:
            problem = check_turns(row.get("turns"))
        ok = problem is None
        out.append(
            {
                "id": str(row.get("id") or f"{origin}:{index}"),
                "source": str(source) if source else None,
                "language": language if language in LANGUAGES else None,
                "turns": row["turns"] if ok else [],
                "file": origin,
                "index": index,
                "reject": None
                if ok
                else reject_json(origin, index, *problem, row, source, language),
            }
        )
    return pa.Table.from_pylist(out, schema=CONVERSATION_STREAM_SCHEMA)


def read_file_groups(batch: pa.Table, block_chars: int, **origin: Any) -> Iterator[pa.Table]:
    """A batch of `{"paths": [...]}` items -> their conversations, block by block."""
    for group in batch["paths"].to_pylist():
        yield from iter_conversation_blocks(group, block_chars, **origin)


def load_hf_dataset(spec: str):
    """`hf:<name or dir>[:<split>]` -> a `datasets.Dataset` with an `__index` column.

    A local directory written by `save_to_disk` is loaded from disk (no network);
    anything else goes to `datasets.load_dataset` (the Hub, when reachable).
    """
    import datasets

    name, _, split = spec[len(HF_PREFIX) :].partition(":")
    path = Path(name)
    if path.is_dir() and any((path / f).exists() for f in ("state.json", "dataset_dict.json")):
        hf = datasets.load_from_disk(name)
        if isinstance(hf, datasets.DatasetDict):
            hf = hf[split or "train"]
    else:
        hf = datasets.load_dataset(name, split=split or "train")
    return hf.add_column("__index", list(range(len(hf))))
