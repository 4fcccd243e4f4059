"""A Ray cluster of a test's own: `ray start --head` on this machine, with token
authentication on (Ray 2.60's default for `ray start` once a token exists; here the
token is the test's own, in RAY_AUTH_TOKEN). Used by the `ray job submit` tests
(tests/jobs/conftest.py) and the autoscaling test (tests/cluster/test_autoscaling.py).

    with ray_start_head(num_cpus=4) as head:
        head.ray("job", "submit", "--address", head.dashboard_url, "--", "python", ...)

Ports come from medbase_ray.net.free_port and the session lives in its own --temp-dir,
so the cluster never meets another Ray on the machine. It is stopped without `ray stop`
(which stops every Ray on the machine): SIGTERM to the blocking `ray start` drains and
ends its node, then anything left in its process session is killed (the nodes an
autoscaler started included: they are children of its monitor, in the same session).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medbase_ray.net import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60
START_ATTEMPTS = 3


@dataclass
class RayHead:
    dashboard_url: str  # what `ray job submit --address` takes
    env: dict[str, str]  # RAY_AUTH_MODE, RAY_AUTH_TOKEN, PATH: what a client needs
    temp_dir: Path
    log: Path

    def get_json(self, path: str, attempts: int = 5) -> Any:
        """GET <dashboard>/<path> with the token (retried: a dashboard on a busy machine
        can miss a request)."""
        for attempt in range(attempts):
            try:
                return _get_json(f"{self.dashboard_url}/{path}", self.env["RAY_AUTH_TOKEN"])
            except OSError:
                if attempt == attempts - 1:
                    raise
                time.sleep(5)
        raise AssertionError("unreachable")

    def job_info(self, submission_id: str) -> dict:
        """The Jobs REST API's record of a job (status: PENDING, RUNNING, SUCCEEDED...)."""
        return self.get_json(f"api/jobs/{submission_id}")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of `ray start`'s output, for a failing assertion's message."""
        return self.log.read_text(errors="replace")[-chars:]

    def ray(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """`ray <args>` against this cluster, from the repository root."""
        return subprocess.run(
            [str(VENV_BIN / "ray"), *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )


def _get_json(url: str, token: str, as_text: bool = False) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode() if as_text else json.load(response)


def _ready_for_jobs(dashboard_url: str, agent_url: str, token: str) -> bool:
    """The dashboard lists jobs and the head's dashboard agent (which runs them) is up."""
    try:
        _get_json(f"{agent_url}/api/healthz", token, as_text=True)
        return isinstance(_get_json(f"{dashboard_url}/api/jobs/", token), list)
    except (OSError, ValueError):
        return False


def _session_pids(session_id: int) -> list[int]:
    """Processes of one session: the head and everything it started (workers too)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session_id:
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return pids


def _stop(head: subprocess.Popen) -> None:
    head.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=STOP_TIMEOUT_S)  # it drains and stops its processes
    deadline = time.monotonic() + 10
    while (left := _session_pids(head.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    head.wait(timeout=10)


def _start_head(
    env: dict[str, str],
    temp_dir: Path,
    log: Path,
    num_cpus: int,
    autoscaling: Callable[[str], dict] | None,
) -> tuple[subprocess.Popen, str]:
    """`ray start --head --block` on free ports; (the process, the dashboard URL) once it
    takes jobs. Raises (after stopping what it started) when the head does not come up."""
    ports = {
        name: str(free_port())
        for name in (
            "--port",
            "--dashboard-port",
            "--ray-client-server-port",
            "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port",
            "--metrics-export-port",
            "--runtime-env-agent-port",
        )
    }
    command = [
        str(VENV_BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
        "--num-cpus", str(num_cpus), "--temp-dir", str(temp_dir),
        *[part for option in ports.items() for part in option],
    ]  # fmt: skip
    if autoscaling is not None:
        config = temp_dir / "autoscaling.json"
        config.write_text(json.dumps(autoscaling(f"127.0.0.1:{ports['--port']}")))
        command += ["--autoscaling-config", str(config)]
    with log.open("ab") as out:
        head = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    dashboard_url = f"http://127.0.0.1:{ports['--dashboard-port']}"
    agent_url = f"http://127.0.0.1:{ports['--dashboard-agent-listen-port']}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _ready_for_jobs(dashboard_url, agent_url, env["RAY_AUTH_TOKEN"]):
        if head.poll() is not None or time.monotonic() > deadline:
            _stop(head)
            raise RuntimeError(f"ray start --head failed:\n{log.read_text()[-3000:]}")
        time.sleep(1)
    return head, dashboard_url


@contextlib.contextmanager
def ray_start_head(
    num_cpus: int,
    env: dict[str, str] | None = None,
    autoscaling: Callable[[str], dict] | None = None,
) -> Iterator[RayHead]:
    """A head node of `num_cpus` CPUs, stopped (its whole process session) on exit.

    env: more environment for the head and its processes. autoscaling: the head's
    autoscaler config (`ray start --autoscaling-config`), made from the GCS address
    ("127.0.0.1:PORT"; the fake multi-node provider connects its nodes there)."""
    # Short: Ray's unix sockets live under the temp dir and their paths must fit 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="mbray-", dir="/tmp"))
    log = temp_dir / "head.log"
    head_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    head_env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        # A job's `python` is the cluster's: this virtualenv's.
        PATH=f"{VENV_BIN}{os.pathsep}{head_env.get('PATH', '')}",
        # On SIGTERM a node first drains, for up to 30 s (Ray 2.60: for Serve proxies to
        # quiesce); a test cluster has nothing to hand over. (The autoscaling test's stop
        # took 40 s with it, 13 s without, at a load average of ~35.)
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
    )
    head_env.update(env or {})
    try:
        for attempt in range(START_ATTEMPTS):
            try:
                head, dashboard_url = _start_head(head_env, temp_dir, log, num_cpus, autoscaling)
                break
            except RuntimeError:  # an overloaded machine can time the raylet out: again
                if attempt == START_ATTEMPTS - 1:
                    raise
        try:
            yield RayHead(dashboard_url=dashboard_url, env=head_env, temp_dir=temp_dir, log=log)
        finally:
            _stop(head)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
