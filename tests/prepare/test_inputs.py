"""Input listing and grouping (pure): which files, and which go to one Ray task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medbase_ray.corpus.rejects import CorpusError
from medbase_ray.prepare.inputs import (
    group_files,
    iter_conversation_blocks,
    list_conversation_files,
)


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_conversation_files_are_listed_and_grouped_by_source(tmp_path: Path) -> None:
    conv = [["q", "a"]] * 50
    for part in ("p0", "p1", "p2"):
        write(tmp_path / part / "exam_en_qa.json", conv)
        write(tmp_path / part / "exam_fr.json", conv)
        write(tmp_path / part / "book_en_text.json", ["a passage"])  # raw text: skipped
    (tmp_path / "p0" / "rows.jsonl").write_text(
        json.dumps({"source": "forum", "language": "es", "turns": ["q", "a"]}) + "\n"
    )
    files = list_conversation_files([str(tmp_path)])
    assert len(files) == 7 and not any("_text" in f for f in files)
    size = Path(files[0]).stat().st_size
    groups = group_files(files, bytes_per_group=2 * size)
    # One source per group, at most two of these files per group, every file once.
    assert sorted(f for g in groups for f in g) == sorted(files)
    for g in groups:
        assert len({Path(f).name for f in g}) == 1 and len(g) <= 2
    assert sorted(len(g) for g in groups) == [1, 1, 1, 2, 2] and len(groups[0]) == 2


def test_bad_names_are_rejected_and_missing_inputs_are_errors(tmp_path: Path) -> None:
    bad = write(tmp_path / "notes.json", [["q", "a"]])
    files = list_conversation_files([str(tmp_path)])
    (table,) = iter_conversation_blocks(files, 2**20)
    (reject,) = [json.loads(r) for r in table["reject"].to_pylist()]
    assert reject["file"] == str(bad) and reject["field"] == "language"
    assert "--language" in reject["reason"]  # the reject says how to give it
    bad.unlink()
    with pytest.raises(CorpusError, match="no conversation files"):
        list_conversation_files([str(tmp_path)])
    with pytest.raises(CorpusError, match="no such file"):
        list_conversation_files([str(tmp_path / "missing")])


def test_a_file_reads_into_rows_and_reject_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "exam_en.json", [["q", "a"], ["q"], ["q", "a", "q2", "a2"]])
    (table,) = iter_conversation_blocks([str(path)], 2**20)
    table = table.to_pylist()
    good = [r for r in table if r["reject"] is None]
    assert [r["index"] for r in good] == [0, 2] and good[0]["source"] == "exam"
    (bad,) = [json.loads(r["reject"]) for r in table if r["reject"] is not None]
    assert (bad["index"], bad["field"], bad["source"], bad["language"]) == (
        1,
        "turns",
        "exam",
        "en",
    )
    assert bad["reason"].startswith("odd number of turns")


def test_a_big_file_streams_in_blocks(tmp_path: Path) -> None:
    """Blocks of about block_chars characters, every row once, in order."""
    path = write(tmp_path / "book_en_qa.json", [[f"q{i}", "a" * 100] for i in range(1000)])
    blocks = list(iter_conversation_blocks([str(path)], block_chars=10_000))
    assert len(blocks) == 11  # 1000 rows x ~103 chars / 10,000
    assert all(b.num_rows <= 98 for b in blocks)
    assert [i for b in blocks for i in b["index"].to_pylist()] == list(range(1000))
