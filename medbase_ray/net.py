"""Local network helpers shared by the stages, benchmarks and tests."""

from __future__ import annotations

import socket


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
