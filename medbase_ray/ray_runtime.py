"""Ray bootstrap, one helper for every stage.

Connects to `address` or `RAY_ADDRESS` when set (inside a `ray job submit` job Ray sets
it, so the same code runs unchanged there); otherwise starts a local Ray of its own, sized
to the machine, with its dashboard on loopback only (never the cluster a `ray start` left
running here: pass its address to use it).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from medbase_ray.net import free_port

log = logging.getLogger(__name__)

GCS_PORT_VAR = "RAY_GCS_SERVER_PORT"


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Ray workers: DeepSpeed on CPU where there is no GPU, plus `extra`."""
    env: dict[str, str] = {}
    if "DS_ACCELERATOR" in os.environ:
        env["DS_ACCELERATOR"] = os.environ["DS_ACCELERATOR"]
    elif not _has_cuda():
        env["DS_ACCELERATOR"] = "cpu"
    for key in ("MEDBASE_CACHE", "XDG_CACHE_HOME", "HF_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra or {})
    return env


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    env_vars: dict[str, str] | None = None,
    *,
    log_to_driver: bool = True,
    logging_level: int = logging.WARNING,
) -> dict[str, Any]:
    """Connect to or start Ray once per process; returns the cluster's resources.

    log_to_driver: forward workers' output to this process (what a job's log wants; the
    demo keeps it in Ray's session logs instead). logging_level: a new local Ray's."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS") or None
    runtime_env = {"env_vars": worker_env(env_vars)}
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        if address != "auto" and "://" not in address:  # host:port (see below)
            runtime_env["env_vars"].setdefault("RAY_ADDRESS", address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
    else:
        cpus = num_cpus or os.cpu_count() or 1
        # Ray code in workers that looks its cluster up (Ray Train's placement-group
        # cleaner queries the state API) finds it by RAY_ADDRESS, else by the GCS
        # processes on this machine, and fails when it sees more than one: so the
        # cluster's GCS port is chosen here and its address handed to every worker.
        # (free on every interface, as the GCS listens on all of them)
        gcs = f"{ray.util.get_node_ip_address()}:{free_port(host='')}"
        runtime_env["env_vars"]["RAY_ADDRESS"] = gcs
        log.info("starting a local Ray with %d CPUs at %s (dashboard on 127.0.0.1)", cpus, gcs)
        previous = os.environ.get(GCS_PORT_VAR)
        os.environ[GCS_PORT_VAR] = gcs.rsplit(":", 1)[1]  # read by Ray when it starts a head
        try:
            ray.init(
                # "local": a new Ray even when `ray start` runs on this machine (None
                # would join the cluster it recorded in /tmp/ray/ray_current_cluster).
                address="local",
                num_cpus=cpus,
                dashboard_host="127.0.0.1",
                runtime_env=runtime_env,
                log_to_driver=log_to_driver,
                configure_logging=True,
                logging_level=logging_level,
            )
        finally:
            if previous is None:
                os.environ.pop(GCS_PORT_VAR, None)
            else:
                os.environ[GCS_PORT_VAR] = previous
    return ray.cluster_resources()
