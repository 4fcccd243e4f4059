"""Kill-and-resume: `medbase rewrite` is SIGKILLed mid-run (a real subprocess driving
the test's Ray cluster), then re-run: exactly one output or reject per input, zero
duplicates, zero lost, and the finished items are not requested again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from rewrite_inputs import passage, write_jsonl

from medbase_ray.config import load_config
from medbase_ray.rewrite.pipeline import run_rewrite
from medbase_ray.rewrite.store import RewriteStore

pytestmark = pytest.mark.integration

N_ITEMS = 48


def test_a_killed_run_resumes_with_nothing_lost_or_doubled(
    tmp_path: Path, ray_local, fault_teacher
) -> None:
    import ray

    # every request takes delay_s: 48 items, 4 in flight -> about 3 s of work
    rows = [passage(i, marker=f"[fault:delay] item {i}") | {"id": f"p{i}"} for i in range(N_ITEMS)]
    input_path = write_jsonl(tmp_path / "passages.jsonl", rows)
    config_path = tmp_path / "rewrite.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "run": {"root": str(tmp_path / "runs"), "name": "killed"},
                "rewrite": {
                    "input": str(input_path),
                    "tasks": ["dialogue"],
                    "base_url": fault_teacher.base_url,
                    "max_in_flight": 4,
                    "num_actors": 1,
                    "rows_per_block": 4,
                    "rows_per_shard": 4,
                    "flush_s": 0.1,
                },
            }
        )
    )
    cfg = load_config(config_path)
    store = RewriteStore(cfg.run.stage_dir("rewrite"))
    fault_teacher.server.reset()

    env = os.environ | {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "medbase_ray.cli", "rewrite", "-c", str(config_path)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, killed as a whole below
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(Path(store.conversations).glob("part-*.parquet"))) < 2:
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no shard written in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    written_before = [i for i, _ in store.statuses()]
    assert 0 < len(written_before) < N_ITEMS, "the kill must land mid-run"
    assert not (Path(store.root) / "_SUCCESS").exists()
    requested_before = Counter(fault_teacher.server.attempts)

    summary = run_rewrite(cfg)
    ids = [i for i, _ in store.statuses()]
    assert len(ids) == len(set(ids)) == N_ITEMS  # zero duplicates, zero lost
    assert set(ids) == {f"p{i}#dialogue" for i in range(N_ITEMS)}
    assert summary["in"] == N_ITEMS == summary["out"] + summary["rejected"]
    assert summary["skipped"] == len(written_before)
    assert (Path(store.root) / "_SUCCESS").exists()
    # finished items were not asked for again; every shard is whole
    again = fault_teacher.server.attempts - requested_before
    asked_again = {i for i in range(N_ITEMS) for p in again if f"] item {i} Hyper" in p}
    assert asked_again and not asked_again & {int(i[1:].split("#")[0]) for i in written_before}
    for shard in store.shards():
        assert pq.read_table(shard).num_rows > 0
