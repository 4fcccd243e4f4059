"""Driver of the multi-node train tests: `run_train` on a Ray test cluster of its own.

    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(openssl rand -hex 32)
    python tests/cluster/train_on_test_cluster.py spread OUT_DIR
    python tests/cluster/train_on_test_cluster.py autoscale OUT_DIR

`spread` is run by tests/cluster/test_multinode.py in a subprocess (`autoscale` by hand
for now: on the loaded shared machine its head never got past Ray's node startup): a process joins one Ray cluster,
and the test session already holds its own (tests/conftest.py `ray_local`, with fixtures
such as the Serve endpoint living on it). A child process keeps both intact, and whatever
it starts dies with it. Writes OUT_DIR/result.json for the test to check.

spread: a head with 0 CPUs and raylet nodes (ray.cluster_utils.Cluster). The same 2-worker
run twice: on one node of 2 CPUs, then, that node removed, on two nodes of 1 CPU each.

autoscale: a head with 0 CPUs and the autoscaler's fake multi-node provider (the config
ray.cluster_utils.AutoscalingCluster writes, on a Cluster head with free ports: that class
runs `ray stop --force` first, which ends every Ray process of the machine, other users'
included). No worker node at start; the worker type carries the CPU each train worker
asks for; the autoscaler adds nodes, the run ends, and the idle nodes are removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
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
IDLE_TIMEOUT_S = 6  # autoscale: idle nodes go after this long


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


# -- autoscale -------------------------------------------------------------------------------


def fake_provider_config(gcs_address: str, worker_cpus: int, max_workers: int) -> dict:
    """The launcher config of a fake multi-node cluster (as AutoscalingCluster writes it)."""
    return {
        "cluster_name": "medbase-fake",
        "max_workers": max_workers,
        "idle_timeout_minutes": IDLE_TIMEOUT_S / 60,
        "upscaling_speed": 1.0,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu_worker": {
                "resources": {"CPU": worker_cpus},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def start_fake_cluster(temp_dir: Path):
    """The head (0 CPUs) with the autoscaler's fake multi-node provider: a
    ray.cluster_utils.Cluster head given the autoscaling config, as `ray start
    --autoscaling-config` would start it. Returns the Cluster."""
    from ray.cluster_utils import Cluster
    from ray.util import get_node_ip_address

    port = free_port()
    address = f"{get_node_ip_address()}:{port}"
    config = temp_dir / "autoscaling.json"
    config.write_text(json.dumps(fake_provider_config(address, 1, 2)))
    # Read by the autoscaler (started by the head, inheriting this environment); RAY_ADDRESS
    # keeps calls of Ray's state API inside the cluster on this cluster.
    os.environ.update(
        {"AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1", "RAY_ADDRESS": address}
    )
    head = {
        "num_cpus": 0,
        "gcs_server_port": port,
        "dashboard_port": free_port(),
        "autoscaling_config": str(config),
    }
    return start_head(lambda: Cluster(initialize_head=True, head_node_args=head | node_ports()))


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
    (session_<time>_<this pid>; the fake provider's nodes are the autoscaler's children;
    `ray stop` would end every Ray process of the machine)."""
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


def alive_worker_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)


def autoscale(out: Path) -> dict[str, Any]:
    import ray

    rows = packed_rows(STEPS * 2 * MICRO)
    cluster = start_fake_cluster(Path(tempfile.mkdtemp(prefix="medbase-fake-cluster-")))
    session_name = Path(cluster.head_node.get_session_dir_path()).name
    try:
        init_ray(address=cluster.address)
        at_start = alive_worker_nodes()
        # Time from the submission until the worker nodes have joined (polled beside train).
        started = time.monotonic()
        upscaled: dict[str, float] = {}

        def watch() -> None:
            while "s" not in upscaled and time.monotonic() - started < 300:
                if alive_worker_nodes() >= 2:
                    upscaled["s"] = time.monotonic() - started
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        summary, _ = run(out, "autoscale", rows, set())
        watcher.join()
        peak = alive_worker_nodes()
        finished = time.monotonic()
        while alive_worker_nodes() > 0 and time.monotonic() - finished < 180:
            time.sleep(1)
        return summary | {
            "nodes_at_start": at_start,
            "nodes_after_run": peak,
            "upscaling_s": round(upscaled.get("s", -1.0), 1),
            "nodes_after_idle": alive_worker_nodes(),
            "scale_down_s": round(time.monotonic() - finished, 1),
        }
    finally:
        ray.shutdown()
        cluster.shutdown()
        stop_processes_of(session_name)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    mode, out = sys.argv[1], Path(sys.argv[2])
    # Ray 2.60's `ray start` turns token auth on when a token exists (~/.ray/auth_token
    # may or may not): the caller gives this cluster its own, in the environment Ray
    # reads when it is imported (the head, its nodes and this driver).
    if os.environ.get("RAY_AUTH_MODE") != "token" or not os.environ.get("RAY_AUTH_TOKEN"):
        sys.exit("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (e.g. $(openssl rand -hex 32))")
    result = {"spread": spread, "autoscale": autoscale}[mode](out)
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
