"""A Ray cluster of its own for the `ray job submit` tests: `ray start --head` on this
machine, with token authentication on (Ray 2.60's default for `ray start` once a token
exists; here the token is the test's own, in RAY_AUTH_TOKEN).

Ports come from medbase_ray.net.free_port and the session lives in its own --temp-dir,
so the cluster never meets another Ray on the machine. It is stopped without `ray stop`
(which stops every Ray on the machine): SIGTERM to the blocking `ray start` drains and
ends its node, then anything left in its process session is killed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medbase_ray.net import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60


@dataclass
class RayHead:
    dashboard_url: str  # what `ray job submit --address` takes
    env: dict[str, str]  # RAY_AUTH_MODE, RAY_AUTH_TOKEN, PATH: what a client needs
    temp_dir: Path
    log: Path

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


def _jobs_api_answers(dashboard_url: str, token: str) -> bool:
    request = urllib.request.Request(
        f"{dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
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


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    token = secrets.token_hex(16)
    # Short: Ray's unix sockets live under the temp dir and their paths must fit 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="mbray-", dir="/tmp"))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        # The job's `python` is the cluster's: this virtualenv's.
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
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
        "--num-cpus", "4", "--temp-dir", str(temp_dir),
        *[part for option in ports.items() for part in option],
    ]  # fmt: skip
    log = temp_dir / "head.log"
    with log.open("wb") as out:
        head = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    dashboard_url = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _jobs_api_answers(dashboard_url, token):
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head failed:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield RayHead(dashboard_url=dashboard_url, env=env, temp_dir=temp_dir, log=log)
    finally:
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
