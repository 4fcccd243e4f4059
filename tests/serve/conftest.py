"""Helpers of the serve tests: differently configured apps on the session's Serve proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def serve_port() -> int:
    return int(os.environ.get("MEDBASE_TEST_SERVE_PORT", "18000"))


@contextmanager
def _deploy_variant(model_path: str, name: str, **serve_fields: Any) -> Iterator[str]:
    """Deploy the app as `name` at route prefix `/name` with `serve_fields` changed.

    One Ray cluster has one Serve HTTP proxy (started by the `tiny_endpoint` fixture or
    by whichever app came first), so variants share it under their own route prefix.
    Yields the base URL ("http://127.0.0.1:PORT/name/v1"); deletes the app afterwards.
    """
    from ray import serve

    from medbase_ray.config import PipelineConfig
    from medbase_ray.serve.app import start_server
    from medbase_ray.serve.config import ServeConfig

    cfg = PipelineConfig()
    fields = {"port": serve_port(), "num_cpus": 0, "model_id": "tiny"} | serve_fields
    cfg.serve = ServeConfig.model_validate(cfg.serve.model_dump() | fields)
    url = start_server(model_path, cfg, name=name, route_prefix=f"/{name}")
    try:
        yield url
    finally:
        serve.delete(name)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_dir):
    from medbase_ray.models.loading import load_tokenizer

    return load_tokenizer(str(tiny_dir))


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    """The same checkpoint in this process, to compare the endpoint with."""
    from medbase_ray.models.loading import load_model

    return load_model(str(tiny_dir)).eval()


@pytest.fixture(scope="session")
def deploy_variant(tiny_endpoint):
    """`with deploy_variant(model_path, name, **serve_fields) as base_url:` (after the
    shared endpoint is up, so that its proxy, on the test port, is the one shared)."""
    return _deploy_variant
