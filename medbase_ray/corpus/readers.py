"""Readers for the input formats of DESIGN.md.

- ApolloCorpus: `{source}_{language}_{type}.json`, a list of strings (type `text`) or a
  list of lists of turns (`qa`, `dialogue`, or no type);
- JSONL / Parquet rows in the raw-text or conversation contract;
- XMedBench: a JSON list of `{question, options, answer: "(B)", source}`.

Every reader returns `(records, ReadCounts)`. With `on_error="raise"` the first bad row
raises a CorpusError naming file, row and field; with `on_error="reject"` bad rows go to
the `rejects` sink with the reason and the rest is read. read == kept + rejected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from medbase_ray.corpus.languages import LANGUAGES, language_of_source
from medbase_ray.corpus.records import (
    check_eval_item,
    check_text,
    check_turns,
    normalize_answer,
)
from medbase_ray.corpus.rejects import CorpusError, ReadCounts, Reject, RejectSink, raw_snippet

OnError = Literal["raise", "reject"]
Kind = Literal["text", "conversation"]

_APOLLO_NAME = re.compile(r"^(?P<source>.+?)_(?P<lang>[a-z]{2})(?:_(?P<type>[A-Za-z]+))?$")
TEXT_TYPES = {"text"}
CONVERSATION_TYPES = {"qa", "dialogue", "conversation", None}


def sample_dir() -> Path:
    """The bundled sample data (ApolloCorpus layout under apollo/, XMedBench under xmedbench/)."""
    return Path(str(resources.files("medbase_ray.corpus") / "data"))


def parse_apollo_name(path: Path) -> tuple[str, str, str | None]:
    """`medicalBook_en_qa.json` -> ("medicalBook", "en", "qa")."""
    m = _APOLLO_NAME.match(path.stem)
    if m is None or m["lang"] not in LANGUAGES:
        raise CorpusError(
            str(path),
            None,
            "<file name>",
            "expected {source}_{language}_{type}.json with a language in " + ", ".join(LANGUAGES),
        )
    return m["source"], m["lang"], m["type"]


class _Reader:
    """Shared bookkeeping: counts, and raise-or-reject of one bad row."""

    def __init__(self, on_error: OnError, rejects: Callable[[Reject], None] | None) -> None:
        if on_error not in ("raise", "reject"):
            raise ValueError(f"on_error must be 'raise' or 'reject', got {on_error!r}")
        self.on_error = on_error
        self.rejects = rejects if rejects is not None else RejectSink()
        self.counts = ReadCounts()

    def bad(self, file: Path, index: int | None, field: str, reason: str, raw: Any = "") -> None:
        if self.on_error == "raise":
            raise CorpusError(str(file), index, field, reason)
        self.counts.rejected += 1
        self.rejects(Reject(str(file), index, field, reason, raw_snippet(raw)))

    def load_json(self, path: Path) -> Any:
        """The whole file as JSON, or None (rejected) when it is not valid UTF-8 JSON."""
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.counts.read += 1
            self.bad(path, None, "<file>", f"invalid UTF-8 at byte {exc.start}")
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            self.counts.read += 1
            self.bad(
                path,
                None,
                "<file>",
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            )
            return None

    def iter_table_rows(self, path: Path) -> Iterator[tuple[int, Any]]:
        """(index, row) of a JSONL or Parquet file; undecodable JSONL lines are rejected."""
        if path.suffix == ".parquet":
            for i, row in enumerate(pq.read_table(path).to_pylist()):
                yield i, row
            return
        with path.open("rb") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    yield i, json.loads(line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    self.counts.read += 1
                    self.bad(path, i, "<line>", f"invalid UTF-8 at byte {exc.start} of the line")
                except json.JSONDecodeError as exc:
                    self.counts.read += 1
                    self.bad(
                        path,
                        i,
                        "<line>",
                        f"invalid JSON: {exc.msg}",
                        line[:2000].decode("utf-8", "replace"),
                    )


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes)
        if not files:
            raise CorpusError(str(path), None, "<dir>", f"no {'/'.join(suffixes)} files found")
        return files
    if not path.exists():
        raise CorpusError(str(path), None, "<file>", "no such file or directory")
    return [path]


def _record_from_table_row(
    r: _Reader, path: Path, i: int, row: Any, kind: Kind
) -> dict[str, Any] | None:
    if not isinstance(row, dict):
        r.bad(path, i, "<row>", f"expected an object, got {type(row).__name__}", row)
        return None
    payload = "text" if kind == "text" else "turns"
    for field in ("source", payload):
        if field not in row:
            r.bad(path, i, field, "missing", row)
            return None
    language = row.get("language") or language_of_source(str(row["source"]))
    if language not in LANGUAGES:
        r.bad(path, i, "language", f"unknown language {language!r}", row)
        return None
    problem = check_text(row["text"]) if kind == "text" else check_turns(row["turns"])
    if problem is not None:
        r.bad(path, i, problem[0], problem[1], row)
        return None
    rid = row.get("id") or f"{path.stem}:{i}"
    return {
        "id": str(rid),
        "source": str(row["source"]),
        "language": language,
        payload: row[payload],
    }


def read_records(
    path: str | Path,
    kind: Kind,
    on_error: OnError = "raise",
    rejects: Callable[[Reject], None] | None = None,
) -> tuple[list[dict[str, Any]], ReadCounts]:
    """Raw-text (`kind="text"`) or conversation records from a file or directory.

    A directory is read recursively; its ApolloCorpus JSON files are picked by type
    (`*_text.json` for text, `*_qa.json` / `*_dialogue.json` / `*_{lang}.json` for
    conversations); JSONL and Parquet files must hold rows of the contract.
    """
    root = Path(path)
    r = _Reader(on_error, rejects)
    out: list[dict[str, Any]] = []
    wanted = TEXT_TYPES if kind == "text" else CONVERSATION_TYPES
    for file in _files(root, (".json", ".jsonl", ".parquet")):
        if file.suffix == ".json":
            source, language, ftype = parse_apollo_name(file)
            if ftype not in wanted:
                if root.is_dir():
                    continue  # another kind of ApolloCorpus file in the same directory
                raise CorpusError(
                    str(file), None, "<file name>", f"type {ftype!r} is not a {kind} file"
                )
            data = r.load_json(file)
            if data is None:
                continue
            if not isinstance(data, list):
                r.counts.read += 1
                r.bad(file, None, "<file>", f"expected a JSON list, got {type(data).__name__}")
                continue
            for i, value in enumerate(data):
                r.counts.read += 1
                problem = check_text(value) if kind == "text" else check_turns(value)
                if problem is not None:
                    r.bad(file, i, problem[0], problem[1], value)
                    continue
                payload = "text" if kind == "text" else "turns"
                out.append(
                    {
                        "id": f"{file.stem}:{i}",
                        "source": source,
                        "language": language,
                        payload: value,
                    }
                )
                r.counts.kept += 1
        else:
            for i, row in r.iter_table_rows(file):
                r.counts.read += 1
                rec = _record_from_table_row(r, file, i, row, kind)
                if rec is not None:
                    out.append(rec)
                    r.counts.kept += 1
    return out, r.counts


def read_conversations(path: str | Path, on_error: OnError = "raise", rejects=None):
    """Conversation records (`id, source, language, turns`)."""
    return read_records(path, "conversation", on_error, rejects)


def read_raw_texts(path: str | Path, on_error: OnError = "raise", rejects=None):
    """Raw text records (`id, source, language, text`)."""
    return read_records(path, "text", on_error, rejects)


def read_eval_items(
    path: str | Path,
    on_error: OnError = "raise",
    rejects: Callable[[Reject], None] | None = None,
    source_languages: dict[str, str] | None = None,
    default_language: str | None = None,
) -> tuple[list[dict[str, Any]], ReadCounts]:
    """XMedBench items from a JSON file or a directory of them.

    The language follows from the source (`source_languages` first, then the XMedBench
    map, then `default_language`); an item whose language cannot be known is bad.
    The answer is stored as its bare letter.
    """
    r = _Reader(on_error, rejects)
    out: list[dict[str, Any]] = []
    for file in _files(Path(path), (".json",)):
        data = r.load_json(file)
        if data is None:
            continue
        if not isinstance(data, list):
            r.counts.read += 1
            r.bad(file, None, "<file>", f"expected a JSON list of items, got {type(data).__name__}")
            continue
        for i, item in enumerate(data):
            r.counts.read += 1
            problem = check_eval_item(item)
            if problem is not None:
                r.bad(file, i, problem[0], problem[1], item)
                continue
            source = str(item.get("source") or file.stem)
            language = language_of_source(source, source_languages) or default_language
            if language is None:
                r.bad(file, i, "source", f"unknown source {source!r}: give its language", item)
                continue
            out.append(
                {
                    "id": str(item.get("id") or f"{file.stem}:{i}"),
                    "source": source,
                    "language": language,
                    "question": item["question"],
                    "options": item["options"],
                    "answer": normalize_answer(item["answer"]),
                    "context": item.get("context"),
                }
            )
            r.counts.kept += 1
    return out, r.counts
