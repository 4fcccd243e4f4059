"""Readers for the input formats of DESIGN.md, read as Apollo publishes them.

- ApolloCorpus: `{source}_{language}_{type}.json`, a list of strings (type `text`) or a
  list of lists of turns (`qa`, `dialogue`, or no type), in any folder layout (the
  archive's `train/pretrain/*.json`, `train/sft/*.json`);
- Apollo's merged `mixTrain.json`: an object from file stem to that file's list;
- JSONL: rows in the raw-text or conversation contract, or one-element lists
  (`["passage ..."]`, Apollo's raw input for back-translation); Parquet rows;
- XMedBench: a JSON list of `{question, options, answer: "(B)" or "(BCDE)", source}`.

JSON files are read incrementally (corpus.json_stream), never whole. Where a row does
not say its source and language they come from the file name, its folders or the
user (corpus.origin).

Every reader returns `(records, ReadCounts)`. With `on_error="raise"` the first bad row
raises a CorpusError naming file, row and field; with `on_error="reject"` bad rows go to
the `rejects` sink with the reason and the rest is read. read == kept + rejected.
`CorpusReader.iter_file` yields one file's records as it reads them (prepare streams
it into Ray Data blocks).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from medbase_ray.corpus.json_stream import (
    JsonStreamError,
    iter_list_items,
    iter_member_items,
    json_shape,
)
from medbase_ray.corpus.languages import LANGUAGES, language_of_source
from medbase_ray.corpus.origin import (
    CONVERSATION_TYPES,
    LANGUAGE_HELP,
    TEXT_TYPES,
    Origin,
    is_kind,
    member_origin,
    origin_of,
)
from medbase_ray.corpus.records import check_eval_item, check_text, check_turns, normalize_answer
from medbase_ray.corpus.rejects import CorpusError, ReadCounts, Reject, RejectSink, raw_snippet

OnError = Literal["raise", "reject"]
Kind = Literal["text", "conversation"]
SUFFIXES = (".json", ".jsonl", ".parquet")

__all__ = ["CONVERSATION_TYPES", "TEXT_TYPES", "CorpusReader", "list_input_files"]


def sample_dir() -> Path:
    """The bundled sample data (ApolloCorpus layout under apollo/, XMedBench under xmedbench/)."""
    return Path(str(resources.files("medbase_ray.corpus") / "data"))


def _payload(kind: Kind) -> str:
    return "text" if kind == "text" else "turns"


def check_value(value: Any, kind: Kind) -> tuple[Any, tuple[str, str] | None]:
    """An item of a JSON list (or a JSONL list line) as text or turns, or its problem.
    Text may come as a one-element list, as in Apollo's raw-text JSONL."""
    if kind == "conversation":
        return value, check_turns(value)
    if isinstance(value, list):
        if len(value) != 1:
            return value, (
                "text",
                f"expected a string or a one-element list, got {len(value)} elements",
            )
        value = value[0]
    return value, check_text(value)


def list_input_files(
    path: Path, kind: Kind | None, suffixes: tuple[str, ...] = SUFFIXES
) -> list[Path]:
    """The files of `path` to read for `kind`: a file as given, a directory's files
    (recursively) but ApolloCorpus files of another type (`*_text.json` when reading
    conversations); merged files (`mixTrain.json`) have their members picked by type.
    `kind=None`: every file with one of `suffixes`."""
    if not path.exists():
        raise CorpusError(str(path), None, "<file>", "no such file or directory")
    if not path.is_dir():
        return [path]
    files = []
    for p in sorted(q for q in path.rglob("*") if q.is_file() and q.suffix in suffixes):
        origin = origin_of(p)
        if kind is None or p.suffix != ".json" or not origin.named or is_kind(origin.type, kind):
            files.append(p)  # unnamed JSON too: its rows say what they lack when read
    if not files:
        what = f"{kind} files" if kind else "files"
        raise CorpusError(str(path), None, "<dir>", f"no {what} found ({'/'.join(suffixes)})")
    return files


class CorpusReader:
    """Reads files of one kind; counts, and raises or rejects each bad row.

    `source` / `language`: the user's, for rows whose file name and folders say neither.
    """

    def __init__(
        self,
        on_error: OnError = "raise",
        rejects: Callable[[Reject], None] | None = None,
        source: str | None = None,
        language: str | None = None,
    ) -> None:
        if on_error not in ("raise", "reject"):
            raise ValueError(f"on_error must be 'raise' or 'reject', got {on_error!r}")
        self.on_error = on_error
        self.rejects = rejects if rejects is not None else RejectSink()
        self.source, self.language = source, language
        self.counts = ReadCounts()

    def bad(self, file: Path, index: int | None, field: str, reason: str, raw: Any = "") -> None:
        """One bad row (or file): counted as read and rejected, or raised."""
        self.counts.read += 1
        if self.on_error == "raise":
            raise CorpusError(str(file), index, field, reason)
        self.counts.rejected += 1
        self.rejects(Reject(str(file), index, field, reason, raw_snippet(raw)))

    def good(self, record: dict[str, Any]) -> dict[str, Any]:
        self.counts.read += 1
        self.counts.kept += 1
        return record

    # -- one file ---------------------------------------------------------------------
    def iter_file(self, path: Path, kind: Kind, explicit: bool = True) -> Iterator[dict[str, Any]]:
        """The records of one file, as they are read. `explicit`: named by the user (a
        file of another kind is an error) rather than found in a directory."""
        origin = origin_of(path, self.source, self.language)
        if path.suffix == ".json":
            yield from self._iter_json(path, kind, origin, explicit)
        else:
            yield from self._iter_table(path, kind, origin)

    def _iter_json(
        self, path: Path, kind: Kind, origin: Origin, explicit: bool
    ) -> Iterator[dict[str, Any]]:
        try:
            shape = json_shape(path)
        except JsonStreamError as exc:
            self.bad(path, None, "<file>", exc.reason)
            return
        if shape == "list" and origin.named and not is_kind(origin.type, kind):
            if explicit:
                raise CorpusError(
                    str(path), None, "<file name>", f"type {origin.type!r} is not a {kind} file"
                )
            return
        index = 0
        try:
            with path.open("rb") as f:
                if shape == "list":
                    for index, value in enumerate(iter_list_items(f)):
                        record = self._value(path, index, value, kind, origin, path.stem)
                        if record is not None:
                            yield record
                else:
                    for key, index, value in iter_member_items(f):
                        member = member_origin(key, origin)
                        if member.type is not None and not is_kind(member.type, kind):
                            continue  # another kind's member of a merged file
                        record = self._value(path, index, value, kind, member, key, key)
                        if record is not None:
                            yield record
        except JsonStreamError as exc:
            field = exc.member or "<file>"  # a merged file's member, or the file
            self.bad(path, exc.index, field, exc.reason)

    def _value(
        self,
        path: Path,
        index: int,
        value: Any,
        kind: Kind,
        origin: Origin,
        prefix: str,
        member: str | None = None,
    ) -> dict[str, Any] | None:
        """One item of a JSON list (or a list line of JSONL) -> a record, or None (a
        reject). Called once per row of files of any size: no generator, no closure."""
        value, problem = check_value(value, kind)
        if problem is None and origin.language is None:
            problem = ("language", LANGUAGE_HELP)
        if problem is not None:
            field = f"{member}:{problem[0]}" if member else problem[0]
            self.bad(path, index, field, problem[1], value)
            return None
        return self.good(
            {
                "id": f"{prefix}:{index}",
                "source": origin.source or path.stem,
                "language": origin.language,
                _payload(kind): value,
            }
        )

    def _iter_table(self, path: Path, kind: Kind, origin: Origin) -> Iterator[dict[str, Any]]:
        prefix = origin.id_prefix(path.stem)
        for i, row in self._table_rows(path):
            if isinstance(row, list):
                record = self._value(path, i, row, kind, origin, prefix)
                if record is not None:
                    yield record
            elif isinstance(row, dict):
                yield from self._row(path, i, row, kind, origin)
            else:
                reason = f"expected an object or a one-element list, got {type(row).__name__}"
                self.bad(path, i, "<line>", reason, row)

    def _row(
        self, path: Path, i: int, row: dict, kind: Kind, origin: Origin
    ) -> Iterator[dict[str, Any]]:
        """A row of the raw-text or conversation contract."""
        payload = _payload(kind)
        source = row.get("source") or origin.source
        for field, value in (("source", source), (payload, row.get(payload))):
            if value is None:
                self.bad(path, i, field, "missing", row)
                return
        language = row.get("language") or language_of_source(str(source)) or origin.language
        if language is None:
            self.bad(path, i, "language", LANGUAGE_HELP, row)
            return
        if language not in LANGUAGES:
            self.bad(path, i, "language", f"unknown language {language!r}", row)
            return
        problem = check_text(row["text"]) if kind == "text" else check_turns(row["turns"])
        if problem is not None:
            self.bad(path, i, problem[0], problem[1], row)
            return
        rid = row.get("id") or f"{path.stem}:{i}"
        yield self.good(
            {"id": str(rid), "source": str(source), "language": language, payload: row[payload]}
        )

    def _table_rows(self, path: Path) -> Iterator[tuple[int, Any]]:
        """(index, row) of a JSONL or Parquet file; undecodable JSONL lines are rejected."""
        if path.suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            i = 0
            for batch in parquet.iter_batches():
                for row in batch.to_pylist():
                    yield i, row
                    i += 1
            return
        with path.open("rb") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    yield i, json.loads(line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    self.bad(path, i, "<line>", f"invalid UTF-8 at byte {exc.start} of the line")
                except json.JSONDecodeError as exc:
                    raw = line[:2000].decode("utf-8", "replace")
                    self.bad(path, i, "<line>", f"invalid JSON: {exc.msg}", raw)

    # -- files and directories ---------------------------------------------------------
    def read(self, path: str | Path, kind: Kind) -> list[dict[str, Any]]:
        root = Path(path)
        explicit = not root.is_dir()
        return [r for f in list_input_files(root, kind) for r in self.iter_file(f, kind, explicit)]


def read_records(
    path: str | Path,
    kind: Kind,
    on_error: OnError = "raise",
    rejects: Callable[[Reject], None] | None = None,
    source: str | None = None,
    language: str | None = None,
) -> tuple[list[dict[str, Any]], ReadCounts]:
    """Raw-text (`kind="text"`) or conversation records from a file or directory.

    A directory is read recursively; its ApolloCorpus JSON files are picked by type
    (`*_text.json` for text, `*_qa.json` / `*_dialogue.json` / `*_{lang}.json` for
    conversations), merged files by member; JSONL and Parquet files are all read.
    """
    reader = CorpusReader(on_error, rejects, source, language)
    return reader.read(path, kind), reader.counts


def read_conversations(path: str | Path, on_error: OnError = "raise", rejects=None, **origin):
    """Conversation records (`id, source, language, turns`)."""
    return read_records(path, "conversation", on_error, rejects, **origin)


def read_raw_texts(path: str | Path, on_error: OnError = "raise", rejects=None, **origin):
    """Raw text records (`id, source, language, text`)."""
    return read_records(path, "text", on_error, rejects, **origin)


def read_eval_items(
    path: str | Path,
    on_error: OnError = "raise",
    rejects: Callable[[Reject], None] | None = None,
    source_languages: dict[str, str] | None = None,
    default_language: str | None = None,
) -> tuple[list[dict[str, Any]], ReadCounts]:
    """XMedBench items from a JSON file or a directory of them.

    The language follows from the source (`source_languages` first, then the XMedBench
    map, then `default_language`); an item whose language cannot be known is bad. The
    answer is stored as its letters: "(B)" -> "B", CMExam's "(BCDE)" -> "BCDE".
    """
    r = CorpusReader(on_error, rejects)
    out: list[dict[str, Any]] = []
    for file in list_input_files(Path(path), None, (".json",)):
        try:
            if json_shape(file) != "list":
                raise JsonStreamError("expected a JSON list of items, got an object")
            with file.open("rb") as f:
                for i, item in enumerate(iter_list_items(f)):
                    record = _eval_item(r, file, i, item, source_languages, default_language)
                    if record is not None:
                        out.append(r.good(record))
        except JsonStreamError as exc:
            r.bad(file, exc.index, "<file>", exc.reason)
    return out, r.counts


def _eval_item(
    r: CorpusReader,
    file: Path,
    i: int,
    item: Any,
    source_languages: dict[str, str] | None,
    default_language: str | None,
) -> dict[str, Any] | None:
    problem = check_eval_item(item)
    if problem is not None:
        r.bad(file, i, problem[0], problem[1], item)
        return None
    source = str(item.get("source") or file.stem)
    language = language_of_source(source, source_languages) or default_language
    if language is None:
        r.bad(file, i, "source", f"unknown source {source!r}: give its language", item)
        return None
    context = item.get("context")
    if isinstance(context, list):  # PubMedQA's contexts: a list of passages
        context = "\n".join(context)
    return {
        "id": str(item.get("id") or f"{file.stem}:{i}"),
        "source": source,
        "language": language,
        "question": item["question"],
        "options": item["options"],
        "answer": normalize_answer(item["answer"]),
        "context": context,
    }
