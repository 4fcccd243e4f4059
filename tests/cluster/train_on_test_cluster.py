"""Driver of the multi-node train test: `run_train` on a Ray test cluster of its own.

    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(openssl rand -hex 32)
    python tests/cluster/train_on_test_cluster.py spread OUT_DIR

Run by tests/cluster/test_multinode.py in a subprocess: a process joins one Ray cluster,
and the test session already holds its own (tests/conftest.py `ray_local`, with fixtures
such as the Serve endpoint living on it). A child process keeps both intact, and whatever
it starts dies with it. Writes OUT_DIR/result.json for the test to check.

spread: a head with 0 CPUs and raylet nodes (ray.cluster_utils.Cluster). The same 2-worker
run twice: on one node of 2 CPUs, then, that node removed, on two nodes of 1 CPU each.

(The autoscaler's test, tests/cluster/test_autoscaling.py, needs no driver: it submits a
train job to a `ray start --head` of its own.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from medbase_ray.config import PipelineConfig, load_config
from medbase_ray.models.tiny import tiny_model_dir
from medbase_ray.net import free_port
from medbase_ray.ray_runtime import init_ray
from medbase_ray.train.run import run_train

STEPS = 6  # optimizer steps of each run
MICRO = 2  # rows per micro-batch and worker
SEQ_LEN = 128


def packed_rows(rows: int) -> pa.Table:
    """Bundled conversations packed for the tiny model (the prepare stage's pure code)."""
    from medbase_ray.corpus.readers import read_conversations, sample_dir
    from medbase_ray.models.loading import load_tokenizer
    from medbase_ray.prepare.stream import pack_conversations

    tokenizer = load_tokenizer(str(tiny_model_dir()))
    conversations, _ = read_conversations(sample_dir() / "apollo")
    table = pack_conversations(tokenizer, [c["turns"] for c in conversations[:200]], SEQ_LEN)
    assert table.num_rows >= rows, table.num_rows
    return table.slice(0, rows)


def micro_blocks(rows: pa.Table):
    """One block per micro-batch, in order: Ray's split gives global batch k the rows
    [4k, 4k + 4) whatever the nodes (as tests/train/test_train_ray.py)."""
    import ray

    return ray.data.from_arrow([rows.slice(i, MICRO) for i in range(0, rows.num_rows, MICRO)])


def train_config(out: Path, name: str) -> PipelineConfig:
    return load_config(
        preset="tiny",
        overrides=[
            f"run.root={out}",
            f"run.name={name}",
            f"prepare.seq_len={SEQ_LEN}",
            "train.num_workers=2",
            f"train.micro_batch_size={MICRO}",
            f"train.max_steps={STEPS}",
            "train.lr=3e-3",
            "train.warmup_ratio=0.1",
            "train.log_steps=1",
            "train.shuffle_buffer_rows=0",
        ],
    )


def train_worker_nodes(known: set[str]) -> tuple[list[str], set[str]]:
    """Node ids of the Ray Train workers started since `known` (actor ids) was taken."""
    from ray._private.state import actors  # the GCS's actor table, dead actors included

    workers = {
        actor_id: info["Address"]["NodeID"]
        for actor_id, info in actors().items()
        if info["ActorClassName"] == "RayTrainWorker"
    }
    new = sorted(node for actor_id, node in workers.items() if actor_id not in known)
    return new, known | set(workers)


def run(out: Path, name: str, rows: pa.Table, known: set[str]) -> tuple[dict[str, Any], set[str]]:
    result = run_train(train_config(out, name), dataset=micro_blocks(rows))
    nodes, known = train_worker_nodes(known)
    summary = {
        "checkpoint": result["checkpoint"],
        "initial_model": str(tiny_model_dir()),
        "steps": result["steps"],
        "worker_nodes": nodes,
        "losses": [m["loss"] for m in result["metrics"]],
    }
    return summary, known


def node_ports() -> dict[str, Any]:
    """Every port of a node's agents given: other Ray instances may hold the defaults,
    and a raylet waits only 15 s (Ray 2.60, not configurable) for an agent to report a
    port it chose itself, then aborts: a busy machine misses that."""
    return {
        "dashboard_agent_listen_port": free_port(),
        "metrics_agent_port": free_port(),
        "metrics_export_port": free_port(),
        "runtime_env_agent_port": free_port(),
    }


def spread(out: Path) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    rows = packed_rows(STEPS * 2 * MICRO)
    # Every port free (other Ray instances may hold the defaults), and RAY_ADDRESS set for
    # the processes of this cluster: Ray Train's state API calls inside them would
    # otherwise pick "the latest cluster" of the machine.
    from ray.util import get_node_ip_address

    gcs_port = free_port()
    os.environ["RAY_ADDRESS"] = f"{get_node_ip_address()}:{gcs_port}"
    head = {"num_cpus": 0, "gcs_server_port": gcs_port, "dashboard_port": free_port()}
    cluster = start_head(lambda: Cluster(initialize_head=True, head_node_args=head | node_ports()))
    try:
        single_node = cluster.add_node(num_cpus=2, **node_ports())
        cluster.wait_for_nodes()
        init_ray(address=cluster.address)
        single, known = run(out, "single", rows, set())
        cluster.remove_node(single_node)
        nodes = [cluster.add_node(num_cpus=1, **node_ports()) for _ in range(2)]
        cluster.wait_for_nodes()
        multi, _ = run(out, "multi", rows, known)
        return {
            "single": single | {"node_ids": [single_node.node_id]},
            "multi": multi | {"node_ids": [n.node_id for n in nodes]},
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


def start_head(start, attempts: int = 3):
    """`start()`, again after a startup timeout: Ray gives a new node 30 s to register
    (not configurable), which a machine under heavy load can miss. What a failed attempt
    left running (this process's sessions) is ended first."""
    for attempt in range(attempts):
        try:
            return start()
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == attempts - 1:
                raise
            logging.warning("Ray node start timed out (attempt %d): retrying", attempt + 1)
            stop_processes_of(f"_{os.getpid()}/")


def stop_processes_of(session_name: str) -> None:
    """End what is left of this cluster: processes whose command line names its session
    (session_<time>_<this pid>; `ray stop` would end every Ray process of the machine)."""
    import psutil

    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid != os.getpid() and any(session_name in a for a in p.info["cmdline"] or [])
    ]
    for p in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(mine, timeout=10)
    for p in alive:
        p.kill()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    mode, out = sys.argv[1], Path(sys.argv[2])
    # Ray 2.60's `ray start` turns token auth on when a token exists (~/.ray/auth_token
    # may or may not): the caller gives this cluster its own, in the environment Ray
    # reads when it is imported (the head, its nodes and this driver).
    if os.environ.get("RAY_AUTH_MODE") != "token" or not os.environ.get("RAY_AUTH_TOKEN"):
        sys.exit("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (e.g. $(openssl rand -hex 32))")
    result = {"spread": spread}[mode](out)
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
