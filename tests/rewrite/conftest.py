"""Fixtures of the rewrite tests: the fault-injecting teacher (a test double, see
fault_server.py) on a loopback port in 18320-18339."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fault_server import FaultServer, ServerThread  # noqa: E402


def _free_port(ports: range) -> int:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {ports}")


@pytest.fixture(scope="session")
def fault_teacher():
    """A FaultServer (its `server` holds the stats), reset before each use by the test."""
    thread = ServerThread(FaultServer(slow_s=2.5, delay_s=0.25), _free_port(range(18320, 18340)))
    thread.start()
    yield thread
    thread.stop()
