"""Train across nodes, on one machine, with Ray's test clusters (ray.cluster_utils).

Each test runs tests/cluster/train_on_test_cluster.py in a child process that starts its
own cluster: one process joins one Ray cluster, and this session's (tests/conftest.py
`ray_local`, with the Serve endpoint and other fixtures on it) must stay as it is for the
tests after these. The child's cluster ends with it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("train_on_test_cluster.py")


def run_driver(mode: str, out: Path, timeout_s: int = 900) -> dict:
    # The child's clusters use token auth with a token of their own (Ray 2.60's default
    # when a token exists), whatever ~/.ray holds.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    proc = subprocess.run(
        [sys.executable, str(DRIVER), mode, str(out)],
        env=env, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads((out / "result.json").read_text())


def weights(checkpoint: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(checkpoint) / "model.safetensors"))


def test_two_nodes_one_worker_each_end_with_the_single_node_weights(tmp_path: Path) -> None:
    result = run_driver("spread", tmp_path)
    single, multi = result["single"], result["multi"]
    # One node of 2 CPUs holds both workers; two nodes of 1 CPU hold one each.
    assert single["worker_nodes"] == single["node_ids"] * 2
    assert sorted(multi["worker_nodes"]) == sorted(multi["node_ids"])
    assert len(set(multi["worker_nodes"])) == 2
    # The same global batches in the same order (one block per micro-batch; the split
    # preserves order) on the same world size: the runs differ only in the transport of
    # gloo's all-reduce (shared memory on one node, TCP between raylets). With 2 ranks
    # every reduced element is fp32(a + b), the same whichever rank adds (IEEE addition
    # commutes) and the mean halves it exactly: the weights must be equal, bit for bit
    # (measured: max |diff| 0.0). Any other tolerance would hide a lost or repeated step.
    assert multi["losses"] == single["losses"]
    a, b = weights(single["checkpoint"]), weights(multi["checkpoint"])
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), (name, (a[name] - b[name]).abs().max().item())
    initial = load_file(str(Path(single["initial_model"]) / "model.safetensors"))
    moved = max((a[n] - initial[n]).abs().max().item() for n in a)
    assert moved > 1e-3, moved  # the runs trained: equal weights are not just the start
