"""Output storage through pyarrow's filesystems: a local directory or a cloud URI
(s3://, gs://, ...) with the same code. Local writes are atomic (temp file + rename);
an object store makes each object appear whole anyway."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def is_uri(path: str) -> bool:
    """`s3://b/x`, `file:///tmp/x`: True; a plain path: False. The one place that asks."""
    return "://" in str(path)


def is_local_uri(path: str) -> bool:
    """A `file://` URI: local files behind a URI (appendable, renameable)."""
    return str(path).startswith("file://")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """`s3://b/x` -> (S3FileSystem, "b/x"); a plain path -> (local, absolute path)."""
    if is_uri(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def cache_root() -> Path:
    """`$MEDBASE_CACHE`, else `$XDG_CACHE_HOME/medbase-ray`, else `~/.cache/medbase-ray`."""
    if os.environ.get("MEDBASE_CACHE"):
        return Path(os.environ["MEDBASE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medbase-ray"


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def remove_tree(uri: str) -> None:
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)


def remove_file(uri: str) -> None:
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def list_files(uri: str, suffix: str = "") -> list[str]:
    """The files directly under the directory `uri` whose names end with `suffix`, sorted
    (as URIs when `uri` is one); [] when the directory does not exist."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    names = [
        info.base_name
        for info in fs.get_file_info(pafs.FileSelector(path))
        if info.type == pafs.FileType.File and info.base_name.endswith(suffix)
    ]
    return [join(uri, name) for name in sorted(names)]


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def _commit(fs: pafs.FileSystem, tmp: str, path: str) -> None:
    # Local: rename is atomic. Object stores have no rename worth the name, and a
    # single PUT is already all-or-nothing, so they are written in place.
    fs.move(tmp, path)


def _tmp_path(fs: pafs.FileSystem, path: str) -> str:
    if isinstance(fs, pafs.LocalFileSystem):
        head, _, tail = path.rpartition("/")
        return f"{head}/.{tail}.{uuid.uuid4().hex[:8]}.tmp"
    return path


def write_bytes(uri: str, data: bytes) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path.rpartition("/")[0], recursive=True)
    tmp = _tmp_path(fs, path)
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    if tmp != path:
        _commit(fs, tmp, path)


def write_parquet(uri: str, table: pa.Table, row_group_rows: int) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path.rpartition("/")[0], recursive=True)
    tmp = _tmp_path(fs, path)
    pq.write_table(table, tmp, filesystem=fs, row_group_size=row_group_rows)
    if tmp != path:
        _commit(fs, tmp, path)


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = resolve(uri)
    return pq.read_table(path, filesystem=fs, columns=columns)


def open_parquet(uri: str) -> pq.ParquetFile:
    fs, path = resolve(uri)
    return pq.ParquetFile(fs.open_input_file(path))


def download_dir(uri: str, local: str) -> None:
    """Copy the directory at `uri` into the local directory `local` (nothing when absent)."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        pafs.copy_files(
            path, local, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
        )


def upload_dir(local: str, uri: str) -> None:
    """Copy the local directory `local` to `uri` (created when absent)."""
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(
        local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
    )
