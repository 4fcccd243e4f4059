"""`medbase doctor`: what this machine and its Ray cluster can do."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import time
from typing import Any

PACKAGES = (
    "ray",
    "torch",
    "deepspeed",
    "transformers",
    "tokenizers",
    "datasets",
    "openai",
    "pyarrow",
)


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def devices() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cpus": os.cpu_count(), "cuda_gpus": torch.cuda.device_count()}
    if info["cuda_gpus"]:
        info["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(info["cuda_gpus"])]
    return info


def deepspeed_cpu_op(timeout_s: float = 600) -> dict[str, Any]:
    """Build (or load from the cache) DeepSpeed's CPU Adam op in a child process."""
    code = (
        "from deepspeed.ops.op_builder import CPUAdamBuilder; "
        "b = CPUAdamBuilder(); assert b.is_compatible(verbose=False), 'not compatible'; b.load(verbose=False)"
    )
    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cpu")
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"timed out after {timeout_s:.0f} s"}
    took = time.monotonic() - start
    if proc.returncode == 0:
        return {"ok": True, "detail": f"builds and loads ({took:.0f} s)"}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["unknown error"]
    return {"ok": False, "detail": tail[0][:300]}


def ray_cluster(address: str | None, timeout_s: float = 60) -> dict[str, Any]:
    """Whether a Ray cluster is reachable at `address` / RAY_ADDRESS / a local one."""
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    code = (
        f"import ray, json; ray.init(address={target!r}, logging_level='ERROR'); "
        "print(json.dumps(ray.cluster_resources()))"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"{target}: no answer in {timeout_s:.0f} s"}
    if proc.returncode == 0:
        return {"ok": True, "detail": f"{target}: {proc.stdout.strip().splitlines()[-1]}"}
    return {"ok": False, "detail": f"{target}: not reachable (a stage would start a local Ray)"}


def run_doctor(address: str | None = None, build_ops: bool = True) -> dict[str, Any]:
    report: dict[str, Any] = {"python": sys.version.split()[0], "packages": package_versions()}
    report["devices"] = devices()
    report["deepspeed_cpu_op"] = (
        deepspeed_cpu_op() if build_ops else {"ok": None, "detail": "skipped"}
    )
    report["ray_cluster"] = ray_cluster(address)
    return report
