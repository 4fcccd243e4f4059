"""Every rewrite summary says what was rejected (issue 18): dry runs count bad input rows
by reason (read = kept + rejected), and a run in which every row is bad fails saying so,
with the first reasons and the rejects path. No teacher and no Ray are needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rewrite_inputs import passage, write_jsonl

from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.rejects import AllRejected
from medbase_ray.rewrite.pipeline import run_rewrite


def apollo_lines(path: Path, passages: list) -> Path:
    """Apollo's raw input for back-translation: one one-element JSON list a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in passages))
    return path


def config(tmp_path: Path, input_path: Path, **rewrite) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "run": {"root": str(tmp_path / "runs"), "name": "rejects"},
            "rewrite": {"input": str(input_path), "tasks": ["qa"], **rewrite},
        }
    )


def test_dry_run_counts_bad_rows_by_reason(tmp_path: Path) -> None:
    rows = [passage(0), passage(1), {"id": "no-text", "source": "s", "language": "en"}]
    rows.append({"id": "xx", "source": "s", "language": "xx", "text": "t"})
    dry = run_rewrite(config(tmp_path, write_jsonl(tmp_path / "p.jsonl", rows)), dry_run=True)
    assert (dry["rows_read"], dry["rows_kept"], dry["rows_rejected"]) == (4, 2, 2)
    assert dry["rows_rejected_by_reason"] == {
        "text: missing": 1,
        "language: unknown language 'xx'": 1,
    }
    assert dry["in"] == dry["pending"] == 2 + 2  # two qa items, two bad-input rejects


def test_apollo_jsonl_language_from_the_folder_or_the_option(tmp_path: Path) -> None:
    passages = [["Asthma is treated with inhaled corticosteroids."], ["Diabetes care."]]
    in_folder = apollo_lines(tmp_path / "guidelines_en" / "data" / "1.dev.jsonl", passages)
    dry = run_rewrite(config(tmp_path, in_folder), dry_run=True)
    assert (dry["rows_kept"], dry["rows_rejected"], dry["requests"]) == (2, 0, 4)
    bare = apollo_lines(tmp_path / "raw" / "1.dev.jsonl", passages)
    dry = run_rewrite(config(tmp_path, bare, language="en", source="guidelines"), dry_run=True)
    assert (dry["rows_kept"], dry["rows_rejected"]) == (2, 0)


def test_dry_run_on_a_file_of_only_bad_rows_says_so(tmp_path: Path) -> None:
    bare = apollo_lines(tmp_path / "raw" / "1.dev.jsonl", [["passage one"], ["passage two"]])
    out = subprocess.run(
        [sys.executable, "-m", "medbase_ray.cli", "rewrite", "--dry-run", "--input", str(bare)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and out.stdout == ""
    assert "every one of the 2 input rows was rejected" in out.stderr
    assert "2 x language: the language cannot be known" in out.stderr


def test_a_run_where_every_row_is_bad_fails_with_reasons_and_rejects(tmp_path: Path) -> None:
    bad = apollo_lines(tmp_path / "raw" / "1.dev.jsonl", [["one"], ["two"], 42])
    cfg = config(tmp_path, bad)
    with pytest.raises(AllRejected) as info:
        run_rewrite(cfg)  # nothing to ask the teacher: no endpoint, no Ray needed
    rejects_dir = Path(cfg.run.stage_dir("rewrite")).absolute() / "rejects"
    message = str(info.value)
    assert "every one of the 3 input rows was rejected" in message and str(rejects_dir) in message
    assert "2 x language: the language cannot be known" in message
    assert "1 x <line>: expected an object or a one-element list" in message
    rejected = pq.read_table(rejects_dir).to_pylist()
    assert len(rejected) == 3 and {r["reason"] for r in rejected} == {"bad_input"}
    summary = json.loads((rejects_dir.parent / "summary.json").read_text())
    assert summary["rows_read"] == summary["rows_kept"] + summary["rows_rejected"] == 3
    assert summary["in"] == summary["rejected"] == 3 and summary["out"] == 0
