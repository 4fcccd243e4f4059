"""The autoscaler adds nodes for a train job and removes them when idle, on one machine.

A `ray start --head` of its own (tests/cluster/ray_start.py: token auth, own ports and
temp dir, stopped by its process session) with the autoscaler's fake multi-node
provider: the config ray.cluster_utils.AutoscalingCluster writes, started without that
class (its start() and shutdown() run `ray stop --force`, which stops every Ray on the
machine; and in Ray 2.60's wheel its constructor fails: the template it reads,
fake_multi_node/example.yaml, is not shipped). The provider starts each node it launches as real raylet processes on this
machine, children of the autoscaler's monitor, and kills them when it terminates one.

The head holds 0 CPUs and no worker node exists at start; the worker type carries one
CPU, what each of train's workers asks for (the tiny preset's resources_per_worker).
`ray job submit` of jobs/train.py (2 workers, a few steps): the autoscaler must launch
nodes for it, the job must succeed, and the nodes must be gone after the idle timeout.

    DS_ACCELERATOR=cpu python -m pytest tests/cluster/test_autoscaling.py -s

prints the upscaling time (submission to worker nodes alive, and to train's first step).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from .ray_start import RayHead, ray_start_head

pytestmark = pytest.mark.integration

WORKER_CPUS = 1  # the tiny preset's train.resources_per_worker
MAX_WORKER_NODES = 2  # train's 2 workers, one a node
IDLE_TIMEOUT_S = 6
TIMEOUT_S = 600  # submission to scaled down: measured 116 s (load average 15), 173 s (35)
POLL_S = 0.5


def fake_cluster_config(gcs_address: str) -> dict:
    """The launcher config of a fake multi-node cluster, as AutoscalingCluster writes it
    (Ray's template fake_multi_node/example.yaml, which the wheel does not ship, with our
    node types): a head of 0 CPUs, a worker type from 0 nodes."""
    return {
        "cluster_name": "medbase-fake",
        "max_workers": MAX_WORKER_NODES,
        "idle_timeout_minutes": IDLE_TIMEOUT_S / 60,
        "upscaling_speed": 1.0,
        "provider": {
            "type": "fake_multinode",
            # The provider's nodes join the GCS here (default: this machine's port 6379).
            "gcs_address": gcs_address,
            # The template's: nodes are known by their id (they share this machine's IP),
            # and there is nothing to set up over SSH (else every launch "fails").
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {},
        "docker": {},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu_worker": {
                "resources": {"CPU": WORKER_CPUS},
                "node_config": {},
                "min_workers": 0,
                "max_workers": MAX_WORKER_NODES,
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


@pytest.fixture
def fake_cluster() -> Iterator[RayHead]:
    # RAY_FAKE_CLUSTER: the provider refuses to start without it (and the head takes the
    # node id it expects). The autoscaler updates every second instead of every 5 s.
    env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    with ray_start_head(num_cpus=0, env=env, autoscaling=fake_cluster_config) as head:
        yield head


def alive_worker_nodes(head: RayHead) -> int:
    """Worker nodes the GCS lists as alive (the state API of the dashboard)."""
    nodes = head.get_json("api/v0/nodes?limit=100")["data"]["result"]["result"]
    return sum(1 for n in nodes if n["state"] == "ALIVE" and not n["is_head_node"])


def job_logs(head: RayHead, submission_id: str) -> str:
    """The end of a job's output, for a failing assertion's message."""
    return head.ray("job", "logs", "--address", head.dashboard_url, submission_id).stdout[-4000:]


def monitor_log(head: RayHead) -> str:
    """The autoscaler's log (its status every update, each launch and removal)."""
    return (head.temp_dir / "session_latest" / "logs" / "monitor.log").read_text(errors="replace")


def removed_idle(head: RayHead) -> int:
    """Nodes the autoscaler terminated for being idle ("StandardAutoscaler: Terminating
    the node with id ... (idle)", logged before the node is stopped; its summary line
    "Removing N nodes ... (idle)" comes only after, when the test may have looked)."""
    found = re.findall(r"Terminating the node with id \S+ and ip \S+ \(idle\)", monitor_log(head))
    return len(found)


@dataclass
class Timeline:
    """Seconds from the submission; None: not seen."""

    first_node_s: float | None = None  # a worker node alive
    all_nodes_s: float | None = None  # MAX_WORKER_NODES alive
    first_step_s: float | None = None  # train's first step reported (metrics.csv)
    job_end_s: float | None = None
    scaled_down_s: float | None = None  # no worker node alive after the job
    peak_nodes: int = 0
    nodes_at_end: int | None = None  # alive when the job ended
    status: str = ""


def watch(head: RayHead, submission_id: str, metrics_csv: Path, started: float) -> Timeline:
    """Poll the nodes, the job and train's metrics until the job has ended and its nodes
    are gone (or TIMEOUT_S)."""
    seen = Timeline()
    while (elapsed := time.monotonic() - started) < TIMEOUT_S:
        nodes = alive_worker_nodes(head)
        seen.peak_nodes = max(seen.peak_nodes, nodes)
        if nodes >= 1 and seen.first_node_s is None:
            seen.first_node_s = elapsed
        if nodes >= MAX_WORKER_NODES and seen.all_nodes_s is None:
            seen.all_nodes_s = elapsed
        if metrics_csv.exists() and seen.first_step_s is None:
            seen.first_step_s = elapsed
        if seen.job_end_s is None:
            seen.status = head.job_info(submission_id)["status"]
            if seen.status in ("SUCCEEDED", "FAILED", "STOPPED"):
                seen.job_end_s, seen.nodes_at_end = elapsed, nodes
        elif nodes == 0:
            seen.scaled_down_s = elapsed
            return seen
        time.sleep(POLL_S)
    return seen


def test_train_job_scales_the_cluster_up_and_back_down(
    fake_cluster: RayHead, prepared_dir: str, tmp_path: Path
) -> None:
    head = fake_cluster
    assert alive_worker_nodes(head) == 0
    submission_id = f"medbase-autoscale-{uuid.uuid4().hex[:8]}"
    sets = [
        f"run.root={tmp_path}",
        "run.name=autoscale",
        "prepare.seq_len=128",  # as the shared prepared_dir (tests/conftest.py)
        "train.max_steps=4",
        "train.log_steps=1",
    ]
    started = time.monotonic()
    submitted = head.ray(
        "job", "submit", "--address", head.dashboard_url, "--no-wait",
        "--working-dir", ".", "--runtime-env", "jobs/runtime_env.yaml",
        "--submission-id", submission_id,
        "--", "python", "jobs/train.py", "--preset", "tiny", "--data", prepared_dir,
        *[arg for s in sets for arg in ("--set", s)],
    )  # fmt: skip
    assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-3000:]
    seen = watch(head, submission_id, tmp_path / "autoscale" / "train" / "metrics.csv", started)
    print(f"\nautoscaling timeline (s from submission): {asdict(seen)}")
    assert seen.status == "SUCCEEDED", job_logs(head, submission_id) + head.log_tail()
    # The job ran on nodes the autoscaler launched for it: the head has no CPU.
    assert seen.first_node_s is not None and seen.peak_nodes == MAX_WORKER_NODES, seen
    assert seen.first_step_s is not None and seen.first_node_s < seen.first_step_s, seen
    assert (tmp_path / "autoscale" / "train" / "_SUCCESS").exists()
    # ... and removed them once idle (its log gives the reason of every removal).
    assert seen.scaled_down_s is not None, (seen, head.log_tail())
    assert removed_idle(head) >= seen.peak_nodes, monitor_log(head)[-3000:]
