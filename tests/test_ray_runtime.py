"""The Ray bootstrap starts a real local Ray and workers see the project's environment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_local_ray_starts_with_deepspeed_env(ray_local) -> None:
    import ray

    assert ray.is_initialized()
    assert ray_local["CPU"] >= 1

    @ray.remote
    def probe() -> str | None:
        import os

        return os.environ.get("DS_ACCELERATOR")

    assert ray.get(probe.remote()) == "cpu"


def test_init_ray_is_idempotent(ray_local) -> None:
    from medbase_ray.ray_runtime import init_ray

    assert init_ray() == ray_local or init_ray()["CPU"] == ray_local["CPU"]
