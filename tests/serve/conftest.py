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


# A chat template other than Apollo's format (the embedded tokenizer's own template IS
# Apollo's format written in Jinja, so it could not tell the two apart).
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def template_checkpoint(ray_local, tiny_dir, tmp_path_factory) -> str:
    """A checkpoint trained (2 steps of the train stage, 1 worker) with
    `model.chat_format=template` from the tiny model whose tokenizer carries a ChatML
    template: its medbase_config.yaml says "template", its tokenizer holds ChatML."""
    import shutil

    import ray

    from medbase_ray.config import load_config
    from medbase_ray.corpus.readers import read_conversations, sample_dir
    from medbase_ray.models.loading import load_tokenizer
    from medbase_ray.prepare.stream import pack_conversations
    from medbase_ray.train.run import run_train

    tmp = tmp_path_factory.mktemp("template-ckpt")
    base = tmp / "base"
    shutil.copytree(tiny_dir, base)
    tokenizer = load_tokenizer(str(base))
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(base)
    conversations, _ = read_conversations(sample_dir() / "apollo")
    turns = [c["turns"] for c in conversations[:24]]
    rows = pack_conversations(tokenizer, turns, 128, chat_format="template")
    cfg = load_config(
        preset="tiny",
        overrides=[
            f"run.root={tmp}",
            "run.name=t",
            f"model.name_or_path={base}",
            "model.chat_format=template",
            "prepare.seq_len=128",
            "train.num_workers=1",
            "train.micro_batch_size=2",
            "train.max_steps=2",
            "train.log_steps=1",
        ],
    )
    out = run_train(cfg, dataset=ray.data.from_arrow(rows))
    return str(out["checkpoint"])
