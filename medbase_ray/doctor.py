"""`medbase doctor`: what this machine and its Ray cluster can do."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
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
    import torch  # heavy: only when the report is made

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


def ray_auth() -> dict[str, Any]:
    """This client's token-authentication settings, found as Ray finds them (the token
    itself is never shown).

    Ray 2.60: `ray start` turns token auth on when a token exists (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and RAY_AUTH_MODE is unset; a local
    `ray.init()` turns it on and writes ~/.ray/auth_token; `ray job submit` sends the
    token only with RAY_AUTH_MODE=token.
    """
    mode = os.environ.get("RAY_AUTH_MODE") or None
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if os.environ.get("RAY_AUTH_TOKEN"):
        token = "$RAY_AUTH_TOKEN"
    elif token_path:
        readable = Path(token_path).is_file() and Path(token_path).stat().st_size > 0
        token = f"$RAY_AUTH_TOKEN_PATH ({token_path})" if readable else None
    else:
        default = Path.home() / ".ray" / "auth_token"
        token = str(default) if default.is_file() and default.stat().st_size > 0 else None
    return {"client_mode": mode, "token": token}


def cluster_auth_mode(dashboard_url: str, timeout_s: float = 10) -> str:
    """The cluster's auth mode, from its dashboard (a public endpoint: no token needed)."""
    url = f"http://{dashboard_url.removeprefix('http://')}/api/authentication_mode"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.load(response).get("authentication_mode", "unknown")
    except (OSError, ValueError):
        return "unknown (dashboard not reachable)"


def probe_cluster(target: str) -> None:
    """Connect to the cluster at `target` ("auto": the one running on this machine) and
    print what doctor reports as one JSON line. Run in a child process (`ray_cluster`),
    so that a failed connection leaves nothing behind."""
    import ray  # heavy; only in the probe's own process
    from ray._private.services import find_gcs_addresses
    from ray.exceptions import AuthenticationError

    if target == "auto":
        running = sorted(find_gcs_addresses())
        if len(running) != 1:
            print(json.dumps({"state": "none" if not running else "several", "found": running}))
            return
    try:
        context = ray.init(address=target, logging_level="ERROR", log_to_driver=False)
    except AuthenticationError as exc:
        print(json.dumps({"state": "auth", "detail": str(exc).splitlines()[0]}))
        return
    found = {
        "state": "up",
        "gcs_address": context.address_info["gcs_address"],
        "dashboard_url": context.dashboard_url,
        "resources": ray.cluster_resources(),
    }
    if context.dashboard_url:
        found["auth_mode"] = cluster_auth_mode(context.dashboard_url)
    ray.shutdown()
    print(json.dumps(found))


def ray_cluster(address: str | None, timeout_s: float = 60) -> dict[str, Any]:
    """Whether a Ray cluster is reachable at `address` / RAY_ADDRESS / on this machine.

    ok is None (not a failure) when no cluster runs here: each stage then starts its own
    local Ray."""
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    code = f"from medbase_ray.doctor import probe_cluster; probe_cluster({target!r})"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"{target}: no answer in {timeout_s:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    try:
        found = json.loads(lines[-1]) if proc.returncode == 0 and lines else {}
    except ValueError:
        found = {}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return cluster_verdict(target, found, tail[0][:300])


def cluster_verdict(target: str, found: dict[str, Any], error: str = "") -> dict[str, Any]:
    """doctor's `ray_cluster` item from what `probe_cluster` printed ({} when it failed
    with `error`)."""
    state = found.get("state")
    if state == "none":
        detail = (
            "no Ray cluster running on this machine; each stage starts its own local Ray "
            "(`ray start --head` keeps one up for `ray job submit`)"
        )
        return {"ok": None, "detail": detail}
    if state == "several":
        detail = f"several Ray clusters run here ({', '.join(found['found'])}): pass --address"
        return {"ok": None, "detail": detail}
    if state == "auth":
        detail = (
            f"{target}: the cluster wants a token this client does not send: "
            f"export RAY_AUTH_MODE=token and the cluster's token ({found['detail']})"
        )
        return {"ok": False, "detail": detail, "auth_mode": "token"}
    if state == "up":
        return {
            "ok": True,
            "detail": f"{found['gcs_address']}: {json.dumps(found['resources'])}",
            "auth_mode": found.get("auth_mode", "unknown"),
            "dashboard_url": found["dashboard_url"],
        }
    return {"ok": False, "detail": f"{target}: not reachable ({error})"}


def run_doctor(address: str | None = None, build_ops: bool = True) -> dict[str, Any]:
    report: dict[str, Any] = {"python": sys.version.split()[0], "packages": package_versions()}
    report["devices"] = devices()
    report["deepspeed_cpu_op"] = (
        deepspeed_cpu_op() if build_ops else {"ok": None, "detail": "skipped"}
    )
    report["ray_cluster"] = ray_cluster(address)
    report["ray_auth"] = ray_auth() | {"cluster_mode": report["ray_cluster"].get("auth_mode")}
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text lines (`medbase doctor` without --json)."""
    lines = [f"python        {report['python']}"]
    lines += [f"{name:<13} {version}" for name, version in report["packages"].items()]
    d = report["devices"]
    lines.append(f"cpus          {d['cpus']}")
    lines.append(f"cuda gpus     {d['cuda_gpus']} {', '.join(d.get('gpu_names', []))}".rstrip())
    for key, label in (("deepspeed_cpu_op", "deepspeed op"), ("ray_cluster", "ray cluster")):
        item = report[key]
        mark = {True: "ok", False: "FAIL", None: "-"}[item["ok"]]
        lines.append(f"{label:<13} {mark}: {item['detail']}")
    auth = report["ray_auth"]
    client = f"RAY_AUTH_MODE={auth['client_mode'] or '(unset)'}"
    token = f"token from {auth['token']}" if auth["token"] else "no token found"
    cluster = f"; cluster: {auth['cluster_mode']}" if auth["cluster_mode"] else ""
    lines.append(f"{'ray auth':<13} {client}, {token}{cluster}")
    return "\n".join(lines)
