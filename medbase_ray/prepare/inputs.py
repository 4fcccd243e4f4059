"""Inputs of the prepare stream: conversation files (and `datasets` rows) as Arrow
tables in CONVERSATION_STREAM_SCHEMA, bad rows as reject rows with the reason."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from medbase_ray.corpus.readers import CONVERSATION_TYPES, parse_apollo_name, read_conversations
from medbase_ray.corpus.records import check_turns
from medbase_ray.corpus.rejects import CorpusError, RejectSink
from medbase_ray.prepare.stream import CONVERSATION_STREAM_SCHEMA, reject_json

HF_PREFIX = "hf:"


def list_conversation_files(inputs: Iterable[str | Path]) -> list[str]:
    """The conversation files of `inputs` (files or directories, read recursively).

    ApolloCorpus JSON files of another type (`*_text.json`) are skipped in directories;
    a file name that is not `{source}_{language}[_{type}].json` is an error naming it.
    """
    files: list[str] = []
    for item in inputs:
        root = Path(item)
        if not root.exists():
            raise CorpusError(str(root), None, "<file>", "no such file or directory")
        found = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in found:
            if path.suffix in (".jsonl", ".parquet"):
                files.append(str(path))
            elif path.suffix == ".json":
                if parse_apollo_name(path)[2] in CONVERSATION_TYPES:
                    files.append(str(path))
                elif not root.is_dir():
                    raise CorpusError(str(path), None, "<file name>", "not a conversation file")
        if root.is_dir() and not any(f.startswith(str(root)) for f in files):
            raise CorpusError(str(root), None, "<dir>", "no conversation files found")
    return files


def group_files(files: list[str], bytes_per_group: int) -> list[list[str]]:
    """Files in groups of about `bytes_per_group` (one Ray task each), files of one
    ApolloCorpus source and language together so that they are packed together;
    largest groups first."""

    def key(path: str) -> tuple[str, str]:
        p = Path(path)
        if p.suffix == ".json":
            source, language, _ = parse_apollo_name(p)
            return (source, language)
        return ("~", "")  # JSONL / Parquet may mix sources: after the Apollo files

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


def read_conversation_file(path: str) -> pa.Table:
    """One input file -> conversation rows and reject rows (CONVERSATION_STREAM_SCHEMA)."""
    p = Path(path)
    sink = RejectSink()
    records, _ = read_conversations(p, on_error="reject", rejects=sink)
    source = language = None
    if p.suffix == ".json":
        source, language, _ = parse_apollo_name(p)
    rows = [
        {
            "id": r["id"],
            "source": r["source"],
            "language": r["language"],
            "turns": r["turns"],
            "file": path,
            "index": _index_of(r["id"]),
            "reject": None,
        }
        for r in records
    ]
    for rej in sink.rows:
        rows.append(
            {
                "id": None,
                "source": source,
                "language": language,
                "turns": [],
                "file": rej.file,
                "index": rej.index,
                "reject": reject_json(
                    rej.file, rej.index, rej.field, rej.reason, rej.raw, source, language
                ),
            }
        )
    return pa.Table.from_pylist(rows, schema=CONVERSATION_STREAM_SCHEMA)


def _index_of(record_id: str) -> int | None:
    tail = record_id.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


def check_conversation_rows(rows: list[dict[str, Any]], origin: str) -> pa.Table:
    """Rows in the conversation contract from elsewhere (a `datasets` dataset), checked
    like the readers check files; bad rows become reject rows."""
    from medbase_ray.corpus.languages import LANGUAGES, language_of_source

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


def read_file_groups(batch: pa.Table) -> pa.Table:
    """A batch of `{"paths": [...]}` items -> the conversations of all their files."""
    paths = [p for group in batch["paths"].to_pylist() for p in group]
    return pa.concat_tables([read_conversation_file(p) for p in paths])


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
