"""One stage's output directory: the contract every stage keeps (DESIGN.md, "Runs").

    out = StageOutput.of(cfg.run, "prepared")         # <root>/<run>/prepared, path or URI
    if out.is_complete():
        return out.summary()                          # skip: the summary in _SUCCESS
    out.begin(dump_config(cfg))                       # dirs, stale _SUCCESS gone, config.yaml
    ...                                               # the stage writes under out.child(...)
    out.complete(summary)                             # summary.json, then _SUCCESS (last)

The run root is a local directory or a URI (`file://`, `s3://`, `gs://`): every read and
write goes through pyarrow's filesystems (medbase_ray.storage), so a stage never tests
for "://" itself. A stage that must append to a file (object stores cannot) works in
`local_workdir()`: the directory itself when local, else a local copy fetched first and
sent back on exit, failure included, so the next run resumes from it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from medbase_ray import storage

SUCCESS = "_SUCCESS"
CONFIG = "config.yaml"
SUMMARY = "summary.json"


class RunLocation(Protocol):
    """What `StageOutput.of` needs of the `run:` section (config.RunRoot)."""

    def stage_dir(self, stage: str) -> str: ...


class StageOutput:
    """The output directory of one stage: a local path (made absolute) or a URI."""

    def __init__(self, uri: str | Path) -> None:
        text = str(uri)
        self.is_remote = storage.is_uri(text)
        self.uri = text.rstrip("/") if self.is_remote else str(Path(text).absolute())

    @classmethod
    def of(cls, run: RunLocation, stage: str, override: str | None = None) -> StageOutput:
        """`<run.root>/<run.name>/<stage>`, or `override` (a stage's own output option)."""
        return cls(override or run.stage_dir(stage))

    def __repr__(self) -> str:
        return f"StageOutput({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    # -- paths ------------------------------------------------------------------------
    def child(self, *parts: str) -> str:
        """The path or URI of a file or directory under this stage's directory."""
        return storage.join(self.uri, *parts)

    def exists(self, *parts: str) -> bool:
        return storage.exists(self.child(*parts))

    def local_path(self) -> Path | None:
        """The local directory (None when the output is remote)."""
        if not self.is_remote:
            return Path(self.uri)
        _, path = storage.resolve(self.uri)
        return Path(path) if storage.is_local_uri(self.uri) else None

    # -- small files ------------------------------------------------------------------
    def read_text(self, *parts: str) -> str:
        return storage.read_bytes(self.child(*parts)).decode("utf-8")

    def write_text(self, text: str, *parts: str) -> None:
        """Written whole (atomic on a local disk; one PUT on an object store)."""
        storage.write_bytes(self.child(*parts), text.encode("utf-8"))

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_text(*parts))

    def write_json(self, obj: Any, *parts: str) -> None:
        self.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", *parts)

    # -- the contract -----------------------------------------------------------------
    def is_complete(self) -> bool:
        return self.exists(SUCCESS)

    def summary(self) -> dict[str, Any] | None:
        """The summary of a complete output (the JSON of `_SUCCESS`); None if incomplete.

        An empty `_SUCCESS` (written by an older version) reads as `summary.json`'s.
        """
        if not self.is_complete():
            return None
        text = self.read_text(SUCCESS).strip()
        if text:
            return json.loads(text)
        return self.read_json(SUMMARY) if self.exists(SUMMARY) else {}

    def begin(self, config_yaml: str) -> None:
        """Start (or resume) writing: make the directory, drop a stale `_SUCCESS`, write
        the resolved config this run works with. Earlier partial outputs are kept."""
        storage.makedirs(self.uri)
        if self.is_complete():
            storage.remove_file(self.child(SUCCESS))
        self.write_text(config_yaml, CONFIG)

    def complete(self, summary: dict[str, Any]) -> None:
        """`summary.json`, then `_SUCCESS` holding the same JSON: written last."""
        self.write_json(summary, SUMMARY)
        self.write_json(summary, SUCCESS)

    def clear(self) -> None:
        """Remove everything (a stage told to start over)."""
        storage.remove_tree(self.uri)

    @contextmanager
    def local_workdir(self) -> Iterator[Path]:
        """A local directory holding this output while a stage appends to it.

        Local outputs are used in place. A remote one is copied to a cache directory
        first (the URI is the truth: an older local copy is dropped), and copied back when
        the block exits, whatever ended it, so an interrupted run resumes from the URI.
        """
        local = self.local_path()
        if local is not None:
            local.mkdir(parents=True, exist_ok=True)
            yield local
            return
        staged = _staging_root() / hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        storage.download_dir(self.uri, str(staged))
        try:
            yield staged
        finally:
            storage.upload_dir(str(staged), self.uri)


def _staging_root() -> Path:
    # The user cache (MEDBASE_CACHE), beside the embedded model: survives a crash, so a
    # failed upload can be retried by hand.
    return storage.cache_root() / "staging"
