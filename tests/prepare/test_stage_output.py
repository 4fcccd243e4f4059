"""`run_prepare` on the stage-output contract (issue 11) and Apollo's inputs as they are
(issue 18), on a real local Ray: a local path or a `file://` run root gives a complete
output (config.yaml, manifest.json, summary.json, `_SUCCESS` holding the summary) and a
re-run skips it; the archive layout, mixTrain.json and folder-named JSONL are read; one
big file is streamed in blocks that several tasks pack; an all-rejected input fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medbase_ray.config import load_config
from medbase_ray.corpus.rejects import AllRejected
from medbase_ray.prepare.manifest import read_manifest
from medbase_ray.prepare.pipeline import run_prepare

pytestmark = pytest.mark.integration


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def apollo_inputs(root: Path) -> Path:
    """The ApolloCorpus archive layout, a merged file and a folder-named JSONL file."""
    qa = [["What is a fever?", "A temperature above 38 C."], ["q2", "a2"], ["only a question"]]
    write(root / "train" / "sft" / "exam_en_qa.json", json.dumps(qa))
    merged = {"book_zh_qa": [["发烧是什么？", "体温高于38度。"]], "book_zh_text": ["text"]}
    write(root / "merged" / "mixTrain.json", json.dumps(merged, ensure_ascii=False))
    lines = [json.dumps(["Qu'est-ce que la fièvre ?", "Une température élevée."])] * 2
    write(root / "guidelines_fr" / "data" / "1.dev.jsonl", "\n".join(lines) + "\n")
    return root


def config(run_root: str, name: str, inputs: list[str], **prepare):
    sets = [f"run.root={run_root}", f"run.name={name}", f"prepare.inputs={json.dumps(inputs)}"]
    sets += ["prepare.seq_len=128", "clean.enabled=false"]  # prepare's own reading
    sets += [f"prepare.{k}={v}" for k, v in prepare.items()]
    return load_config(overrides=sets)


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_complete_output_under_a_path_or_uri_and_a_rerun_skips(ray_local, tmp_path, as_uri):
    inputs = apollo_inputs(tmp_path / "ApolloCorpus")
    local = tmp_path / "runs"
    cfg = config(local.as_uri() if as_uri else str(local), "r", [str(inputs)])
    result = run_prepare(cfg)
    out = local / "r" / "prepared"
    assert result["output_dir"] == (out.as_uri() if as_uri else str(out))
    for name in ("config.yaml", "manifest.json", "summary.json", "_SUCCESS"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "_SUCCESS").read_text())
    assert summary == json.loads((out / "summary.json").read_text()) == result["summary"]
    assert summary["read"] == summary["kept"] + summary["rejected"] == 3 + 1 + 2
    assert summary["rejected_by_reason"] == {"turns: odd number of turns": 1}
    manifest = read_manifest(result["output_dir"])
    assert set(manifest["sources"]) == {"exam_en", "book_zh", "guidelines_fr"}
    assert manifest["sources"]["guidelines_fr"]["samples"] == 2

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    again = run_prepare(cfg)
    assert again["skipped"] and again["summary"] == summary
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == stamps


def test_one_big_file_is_streamed_in_blocks_packed_by_several_tasks(ray_local, tmp_path):
    # ~2.2 MB of turns in one ApolloCorpus file: three blocks of prepare.task_input_mb=1
    conversation = ["Which drug lowers a fever? " * 10, "Paracetamol lowers a fever. " * 40]
    n = 2_200_000 // sum(map(len, conversation))
    big = write(tmp_path / "in" / "medicalBook_en_qa.json", json.dumps([conversation] * n))
    result = run_prepare(config(str(tmp_path / "runs"), "big", [str(big)], task_input_mb=1))
    assert result["summary"]["read"] == result["summary"]["kept"] == n
    shards = result["manifest"]["sources"]["medicalBook_en"]["shards"]
    write_tasks = {Path(s["path"]).name.split("-")[1] for s in shards}
    assert len(write_tasks) >= 3  # one write task per block: the file did not stay in one


def test_every_row_rejected_fails_naming_reasons_and_rejects(ray_local, tmp_path):
    from typer.testing import CliRunner

    from medbase_ray.cli import app

    bad = write(tmp_path / "in" / "notes.jsonl", json.dumps(["q", "a"]) + "\n")
    cfg = config(str(tmp_path / "runs"), "bad", [str(bad)])
    with pytest.raises(AllRejected, match="the language cannot be known") as info:
        run_prepare(cfg)
    assert str(tmp_path / "runs" / "bad" / "prepared" / "rejects") in str(info.value)
    sets = [
        "clean.enabled=false",
        f"run.root={tmp_path / 'runs'}",
        "run.name=bad",
        f"prepare.inputs={json.dumps([str(bad)])}",
    ]
    result = CliRunner().invoke(
        app, ["prepare", "--set", "prepare.seq_len=128", *[a for s in sets for a in ("--set", s)]]
    )
    assert result.exit_code == 1 and "every one of the 1 input rows was rejected" in result.output
    ok = CliRunner().invoke(
        app,
        [
            "prepare",
            "--language",
            "en",
            *[a for s in sets for a in ("--set", s)],
            "--set",
            "run.name=ok",
        ],
    )
    assert ok.exit_code == 0, ok.output
