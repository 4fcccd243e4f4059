"""Local network helpers shared by the stages, benchmarks and tests."""

from __future__ import annotations

import socket
import time
from typing import Any


def free_port(ports: range | None = None, host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing listens on: the first free one of `ports`, or
    one the OS picks when `ports` is None. (Free when asked; a race is still possible.)"""
    for port in ports if ports is not None else (0,):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in {ports} on {host}")


def wait_for_port(
    port: int, timeout_s: float = 30, host: str = "127.0.0.1", process: Any = None
) -> None:
    """Return once something accepts connections on `host:port`; raise after `timeout_s`,
    or as soon as `process` (a subprocess.Popen serving it) has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for {host}:{port} exited ({process.returncode})")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")
