"""Shared fixtures: one local Ray per test session, the embedded tiny model.

Stage tests live in tests/<stage>/ (mirroring the package). Anything that runs inside a
Ray worker must live in the package, not in a test module: workers import by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The embedded tiny model directory (built once, cached in the user cache)."""
    from medbase_ray.models import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray for the whole session (2 CPUs, as on CI), shut down at the end."""
    import ray

    from medbase_ray.ray_runtime import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    resources = init_ray(num_cpus=int(os.environ.get("MEDBASE_TEST_CPUS", "2")))
    yield resources
    ray.shutdown()
