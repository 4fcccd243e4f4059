"""Fixtures of the rewrite tests: the fault-injecting teacher (a test double, see
fault_server.py) on a loopback port in 18320-18339."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medbase_ray.net import free_port

sys.path.insert(0, str(Path(__file__).parent))

from fault_server import FaultServer, ServerThread  # noqa: E402


@pytest.fixture(scope="session")
def fault_teacher():
    """A FaultServer (its `server` holds the stats), reset before each use by the test."""
    thread = ServerThread(FaultServer(slow_s=2.5, delay_s=0.25), free_port(range(18320, 18340)))
    thread.start()
    yield thread
    thread.stop()
