"""The Ray bootstrap starts a real local Ray and workers see the project's environment."""

from __future__ import annotations

import os

import pytest

from medbase_ray.ray_runtime import init_ray, worker_env


def test_worker_env_sets_the_deepspeed_accelerator_where_there_is_no_gpu(monkeypatch) -> None:
    import torch

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    env = worker_env()
    if torch.cuda.is_available():
        assert "DS_ACCELERATOR" not in env  # DeepSpeed picks CUDA itself
    else:
        assert env["DS_ACCELERATOR"] == "cpu"


def test_worker_env_passes_the_callers_settings(monkeypatch) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "xpu")
    monkeypatch.setenv("MEDBASE_CACHE", "/cache/medbase")
    env = worker_env({"MEDBASE_CACHE": "/elsewhere", "EXTRA": "1"})
    assert env["DS_ACCELERATOR"] == "xpu"
    assert env["MEDBASE_CACHE"] == "/elsewhere"  # the explicit extra wins
    assert env["EXTRA"] == "1"


@pytest.mark.integration
def test_local_ray_starts_with_deepspeed_env(ray_local) -> None:
    import ray

    assert ray.is_initialized()
    assert ray_local["CPU"] == int(os.environ.get("MEDBASE_TEST_CPUS", "2"))

    @ray.remote
    def probe() -> str | None:
        import os

        return os.environ.get("DS_ACCELERATOR")

    assert ray.get(probe.remote()) == "cpu"


@pytest.mark.integration
def test_workers_find_their_own_cluster_among_several(ray_local) -> None:
    """Ray code in workers that looks its cluster up (Ray Train's placement-group
    cleaner, the state API) must find this one, not fail on another Ray of this machine."""
    import ray

    @ray.remote
    def lookup() -> tuple[str | None, str]:
        import os

        from ray._private.services import canonicalize_bootstrap_address_or_die

        return os.environ.get("RAY_ADDRESS"), canonicalize_bootstrap_address_or_die(None)

    env_address, found = ray.get(lookup.remote())
    assert env_address == found == ray.get_runtime_context().gcs_address


@pytest.mark.integration
def test_init_ray_is_idempotent(ray_local) -> None:
    assert init_ray(num_cpus=1)["CPU"] == ray_local["CPU"]  # the running Ray, not a new one
