"""The Ray layer of the serve stage: one Serve deployment with a FastAPI ingress.

    medbase serve tiny                                   # Ctrl-C to stop
    serve run cluster/serve.yaml                         # or: serve deploy cluster/serve.yaml
    python -c "from medbase_ray.serve.app import start_server; ..."

Each replica loads the checkpoint once and batches sequences from all its in-flight
requests with `@serve.batch`; the HTTP surface is `api.create_api` (no Ray there).
The chat format, dtype and tokenizer are the checkpoint's own (its medbase_config.yaml)
unless the config sets them; a contradiction is refused before anything is deployed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from medbase_ray.config import ModelConfig, PipelineConfig, load_config
from medbase_ray.config_base import StrictModel
from medbase_ray.models.checkpoint_info import ModelSettings, resolve_model_settings
from medbase_ray.models.loading import load_tokenizer
from medbase_ray.ray_runtime import init_ray
from medbase_ray.serve.api import create_api, sha256_hex
from medbase_ray.serve.config import ServeConfig
from medbase_ray.serve.engine import Engine, SequenceJob, StepOutput
from medbase_ray.serve.handlers import ServedModel

log = logging.getLogger(__name__)


@serve.deployment(name="OpenAIDeployment")
@serve.ingress()
class OpenAIDeployment:
    """One Serve replica: the checkpoint, batched decoding, and the OpenAI HTTP app."""

    def __init__(
        self,
        model_path: str,
        serve_cfg: ServeConfig,
        model_cfg: ModelConfig,
        model_id: str,
        api_key_sha256: str | None,
    ) -> None:
        import torch  # heavy: the replica's process only, never the driver's

        # Resolved again on the replica's node: "tiny" and cache paths are local to it.
        settings = resolve_model_settings(model_cfg, model_path)
        self.cfg, self.api_key_sha256 = serve_cfg, api_key_sha256
        use_gpu = serve_cfg.num_gpus > 0 and torch.cuda.is_available()
        self.engine = Engine.load(
            settings.path,
            settings.dtype,
            "cuda" if use_gpu else "cpu",
            model_cfg.trust_remote_code,
            settings.tokenizer_path,
        )
        # The HTTP handlers tokenize on the event loop while the batch decodes in a
        # thread: each side gets its own tokenizer (HF fast tokenizers are not re-entrant).
        tokenizer = load_tokenizer(settings.tokenizer_path, model_cfg.trust_remote_code)
        config = self.engine.model.config
        context = serve_cfg.context_tokens or getattr(config, "max_position_embeddings", None)
        self.served = ServedModel(
            model_id=model_id,
            tokenizer=tokenizer,
            context_tokens=context or tokenizer.model_max_length,
            chat_format=settings.chat_format,
            created=int(time.time()),
            vocab_size=getattr(config, "vocab_size", None) or len(tokenizer),
            settings=settings,
        )
        self.decode_batch.set_max_batch_size(serve_cfg.max_batch_size)
        self.decode_batch.set_batch_wait_timeout_s(serve_cfg.batch_wait_timeout_s)

    def __serve_build_asgi_app__(self):
        return create_api(self, self.served, self.cfg, self.api_key_sha256)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # reset from the config above
    async def decode_batch(self, jobs: list[SequenceJob]) -> AsyncIterator[list[Any]]:
        steps = self.engine.decode(jobs)
        # Each step runs in a thread so that the event loop keeps answering (health,
        # errors, new requests joining the queue) while the model computes.
        while (outputs := await asyncio.to_thread(next, steps, None)) is not None:
            yield [StopIteration if out is None else out for out in outputs]

    def generate(self, job: SequenceJob) -> AsyncIterator[StepOutput]:
        return self.decode_batch(job)


def check_model_settings(model_path: str, model_cfg: ModelConfig) -> ModelSettings | None:
    """The checkpoint's settings as the driver sees them (None for "tiny", which has none
    and is built on the replica's node); raises SettingsConflict on a contradiction."""
    if model_path == "tiny":
        return None
    return resolve_model_settings(model_cfg, model_path)


def derive_model_id(model_path: str) -> str:
    """ "tiny" -> "tiny"; "runs/x/train/final/" -> "final"."""
    return Path(model_path.rstrip("/")).name or model_path


def build_app(
    model_path: str, serve_cfg: ServeConfig, model_cfg: ModelConfig | None = None
) -> serve.Application:
    """The Serve application for a checkpoint ("tiny" or any HF model directory).

    The API key is read here, from `serve_cfg.api_key_env`; replicas get its digest.
    "tiny" is resolved on each replica's node (built there if needed). A model setting
    that contradicts the checkpoint's raises SettingsConflict here, before deploying.
    """
    model_cfg = model_cfg or ModelConfig()
    check_model_settings(model_path, model_cfg)
    key = os.environ.get(serve_cfg.api_key_env) or None
    return OpenAIDeployment.options(**serve_cfg.deployment_options()).bind(
        model_path,
        serve_cfg,
        model_cfg,
        serve_cfg.model_id or derive_model_id(model_path),
        sha256_hex(key) if key else None,
    )


class ServeAppArgs(StrictModel):
    """`args:` of an application in cluster/serve.yaml (for `serve run` / `serve deploy`)."""

    checkpoint: str = "tiny"
    config: str | None = None  # a pipeline config YAML; None: the preset
    preset: str | None = None
    overrides: list[str] = []


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Application builder for `serve run medbase_ray.serve.app:app_builder checkpoint=...`."""
    parsed = ServeAppArgs.model_validate(args)
    cfg = load_config(parsed.config, parsed.overrides, preset=parsed.preset)
    return build_app(parsed.checkpoint, cfg.serve, cfg.model)


def proxy_address(default_host: str, default_port: int) -> tuple[str, int]:
    """Host and port of the running Serve proxy (started by whoever came first)."""
    try:
        details = serve.context._get_global_client().get_serve_details()
        http = details.get("http_options") or {}
        return http.get("host", default_host), int(http.get("port", default_port))
    except Exception:  # an older/newer Serve without these details: trust the config
        return default_host, default_port


def start_server(
    model_path: str,
    cfg: PipelineConfig,
    name: str = "medbase",
    route_prefix: str = "/",
    blocking: bool = False,
) -> str:
    """Deploy the app as `name` at `route_prefix`; returns "http://HOST:PORT/PREFIX/v1".

    Serve's HTTP proxy is started once per Ray cluster (host/port from cfg.serve);
    other apps share it under their own name and route prefix.
    """
    check_model_settings(model_path, cfg.model)  # a contradiction fails before Ray starts
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(build_app(model_path, cfg.serve, cfg.model), name=name, route_prefix=route_prefix)
    host, port = proxy_address(cfg.serve.host, cfg.serve.port)
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{host}:{port}{route_prefix.rstrip('/')}/v1"
    if blocking:
        log.info("serving %s at %s (Ctrl-C to stop)", model_path, url)
        wait_until_interrupted(name)
    return url


def wait_until_interrupted(name: str) -> None:
    """Block until Ctrl-C, then delete the app."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.delete(name)
