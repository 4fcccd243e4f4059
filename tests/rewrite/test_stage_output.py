"""`run_rewrite` on the stage-output contract (issue 11): under a local path or a
`file://` run root it writes whole shards, config.yaml, summary.json and `_SUCCESS`
(holding the summary) last; a re-run skips from the summary and asks nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rewrite_inputs import passage, write_jsonl

from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.readers import read_conversations
from medbase_ray.rewrite.pipeline import run_rewrite

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_complete_output_under_a_path_or_uri_and_a_rerun_skips(
    tmp_path: Path, ray_local, fault_teacher, as_uri: bool
) -> None:
    input_path = write_jsonl(tmp_path / "passages.jsonl", [passage(i) for i in range(3)])
    local = tmp_path / "runs"
    cfg = PipelineConfig.model_validate(
        {
            "run": {"root": local.as_uri() if as_uri else str(local), "name": "r"},
            "rewrite": {
                "input": str(input_path),
                "tasks": ["dialogue"],
                "base_url": fault_teacher.base_url,
                "num_actors": 1,
                "max_in_flight": 4,
            },
        }
    )
    fault_teacher.server.reset()
    summary = run_rewrite(cfg)
    out = local / "r" / "rewrite"
    assert summary["output_dir"] == (out.as_uri() if as_uri else str(out))
    for name in ("config.yaml", "summary.json", "_SUCCESS"):
        assert (out / name).is_file(), name
    assert json.loads((out / "_SUCCESS").read_text()) == summary
    conversations, _ = read_conversations(out / "conversations")
    assert sorted(c["id"] for c in conversations) == [f"en-{i}#dialogue" for i in range(3)]
    assert summary["in"] == summary["out"] == 3 and summary["rows_read"] == 3
    assert not list(out.rglob("*.tmp"))

    fault_teacher.server.reset()
    again = run_rewrite(cfg)
    assert again["skipped"] == again["in"] == 3 and again["usage"]["requests"] == 0
    assert fault_teacher.server.stats()["requests"] == 0
