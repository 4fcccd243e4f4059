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
    from medbase_ray.models.tiny import tiny_model_dir

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


# Rows of the shared prepared sample: short, so train and tune runs stay in budget.
PREPARED_SEQ_LEN = 128


@pytest.fixture(scope="session")
def prepared_dir(ray_local, tmp_path_factory) -> str:
    """The bundled sample, prepared (tokenized, loss-masked, packed) for the tiny model in
    PREPARED_SEQ_LEN-token rows; shared by the train and tune tests."""
    from medbase_ray.config import load_config
    from medbase_ray.prepare.pipeline import run_prepare

    root = tmp_path_factory.mktemp("prepare")
    overrides = [f"run.root={root}", "run.name=t", f"prepare.seq_len={PREPARED_SEQ_LEN}"]
    return run_prepare(load_config(preset="tiny", overrides=overrides))["output_dir"]


@pytest.fixture(scope="session")
def tiny_endpoint(ray_local, tiny_dir):
    """The embedded (untrained) tiny model behind a real Ray Serve OpenAI endpoint.

    Yields `.base_url` ("http://127.0.0.1:PORT/v1"), `.model` (the model id) and
    `.model_path` (also as ["base_url"], ...). The Serve HTTP port is
    $MEDBASE_TEST_SERVE_PORT (default 18000). One Ray cluster has one Serve proxy: an app
    configured otherwise must be deployed under another name and route prefix
    (see tests/serve/conftest.py `deploy_variant`). The replica holds no CPU so that
    stages tested later in the session get all of them.
    """
    from ray import serve

    from medbase_ray.config import PipelineConfig
    from medbase_ray.serve.app import start_server

    cfg = PipelineConfig()
    cfg.serve.port = int(os.environ.get("MEDBASE_TEST_SERVE_PORT", "18000"))
    cfg.serve.num_cpus = 0
    cfg.serve.model_id = "tiny"
    base_url = start_server(str(tiny_dir), cfg, name="tiny-endpoint", route_prefix="/")
    yield _Endpoint(base_url=base_url, model="tiny", model_path=str(tiny_dir))
    serve.delete("tiny-endpoint")


class _Endpoint(dict):
    """A dict whose keys are also attributes: endpoint.base_url == endpoint["base_url"]."""

    def __getattr__(self, name: str) -> str:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None
