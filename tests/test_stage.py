"""The stage-output contract (medbase_ray.stage): a local path and a file:// URI alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from medbase_ray.config import RunSettings
from medbase_ray.stage import CONFIG, SUCCESS, SUMMARY, StageOutput


@pytest.fixture(params=["path", "file-uri"])
def root(request, tmp_path: Path) -> str:
    return str(tmp_path) if request.param == "path" else f"file://{tmp_path}"


def test_lifecycle_begin_complete_summary(root: str, tmp_path: Path) -> None:
    out = StageOutput.of(RunSettings(root=root, name="r"), "prepared")
    assert out.uri.endswith("/r/prepared")
    assert out.is_remote == root.startswith("file://")
    assert not out.is_complete() and out.summary() is None

    out.begin("a: 1\n")
    assert (tmp_path / "r" / "prepared" / CONFIG).read_text() == "a: 1\n"
    assert not out.is_complete()
    out.write_text("part", "shards", "x.txt")
    out.complete({"rows": 3})
    assert out.is_complete()
    assert out.summary() == {"rows": 3}
    assert out.read_json(SUMMARY) == {"rows": 3}
    assert (tmp_path / "r" / "prepared" / "shards" / "x.txt").read_text() == "part"

    # A new attempt drops the marker first (so a crash leaves it incomplete), keeps parts.
    out.begin("a: 2\n")
    assert not out.is_complete()
    assert out.exists("shards", "x.txt")
    assert out.read_text(CONFIG) == "a: 2\n"


def test_success_marker_is_written_last(root: str, tmp_path: Path) -> None:
    out = StageOutput(f"{root}/s")
    out.begin("")
    out.complete({"n": 1})
    d = tmp_path / "s"
    assert (d / SUCCESS).stat().st_mtime_ns >= (d / SUMMARY).stat().st_mtime_ns
    assert (d / SUCCESS).stat().st_mtime_ns >= (d / CONFIG).stat().st_mtime_ns


def test_local_workdir_sends_back_a_remote_copy_even_on_failure(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MEDBASE_CACHE", str(tmp_path / "cache"))
    out = StageOutput(f"file://{tmp_path}/remote")
    # A file:// URI is local: used in place.
    with out.local_workdir() as work:
        assert work == tmp_path / "remote"

    # A URI that is not local is staged; simulate one through a subclass that reports
    # no local path (the copy goes through pyarrow's filesystem either way).
    class Staged(StageOutput):
        def local_path(self):
            return None

    staged = Staged(f"file://{tmp_path}/remote")
    staged.write_text("1\n", "results.jsonl")
    with pytest.raises(RuntimeError), staged.local_workdir() as work:
        assert work != tmp_path / "remote"
        assert (work / "results.jsonl").read_text() == "1\n"
        with (work / "results.jsonl").open("a") as f:
            f.write("2\n")
        raise RuntimeError("killed")
    assert (tmp_path / "remote" / "results.jsonl").read_text() == "1\n2\n"
