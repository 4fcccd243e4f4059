"""The Ray layer of eval: the checkpoint in a Ray actor (on a GPU when the cluster has one).

The driver keeps everything else (benchmark, prompts, resume, report, outputs in the
stage directory), so the same runner runs; only the model calls go to the actor. An
endpoint needs no actor: `run_eval_on_ray` then is `run_eval`.

    python jobs/eval.py --preset qwen2.5-0.5b --checkpoint /mnt/ckpt/final
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from medbase_ray.config import PipelineConfig
from medbase_ray.eval.lm import InProcessLM
from medbase_ray.eval.runner import run_eval
from medbase_ray.models.checkpoint_info import resolve_model_settings
from medbase_ray.ray_runtime import init_ray


@ray.remote
class ModelActor:
    """An InProcessLM on a Ray worker; one call at a time (the default concurrency)."""

    def __init__(
        self, model_path: str, dtype: str, device: str, trust_remote_code: bool, cpu_threads=None
    ) -> None:
        self.lm = InProcessLM.load(
            model_path, dtype, device, trust_remote_code, cpu_threads=cpu_threads
        )

    def continuation_logprobs(self, context: str, continuations: Sequence[str]) -> list[float]:
        return self.lm.batch_logprobs([(context, continuations)])[0]

    def batch_logprobs(self, requests: list[tuple[str, list[str]]]) -> list[list[float]]:
        return self.lm.batch_logprobs(requests)

    def generate(self, prompt: str, max_new_tokens: int, min_new_tokens: int = 0) -> str:
        return self.lm.generate_sync(prompt, max_new_tokens, min_new_tokens)


class ActorLM:
    """The runner's LanguageModel, answered by a ModelActor (ObjectRefs are awaitable)."""

    def __init__(self, actor: Any, name: str) -> None:
        self.actor, self.name = actor, name

    async def continuation_logprobs(
        self, context: str, continuations: Sequence[str]
    ) -> list[float]:
        return await self.actor.continuation_logprobs.remote(context, list(continuations))

    async def continuation_logprobs_batch(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[list[float]]:
        return await self.actor.batch_logprobs.remote([(c, list(cs)) for c, cs in requests])

    async def generate(self, prompt: str, max_new_tokens: int, min_new_tokens: int = 0) -> str:
        return await self.actor.generate.remote(prompt, max_new_tokens, min_new_tokens)

    async def aclose(self) -> None:
        ray.kill(self.actor)


def run_eval_on_ray(
    cfg: PipelineConfig,
    base_url: str | None = None,
    model_path: str | None = None,
    out_dir: str | None = None,
    num_gpus: float | None = None,
) -> dict:
    """`run_eval` with the checkpoint in a Ray actor; `num_gpus` None: 1 if the cluster has GPUs."""
    if base_url or cfg.eval.base_url:
        return run_eval(cfg, base_url, model_path, out_dir)
    # The checkpoint's own dtype unless the config sets one (a contradiction raises here).
    settings = resolve_model_settings(cfg.model, model_path)
    resources = init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    if num_gpus is None:
        num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    path = settings.path
    actor = ModelActor.options(num_cpus=1, num_gpus=num_gpus).remote(
        path, settings.dtype, cfg.eval.device, cfg.model.trust_remote_code, cfg.eval.cpu_threads
    )
    return run_eval(cfg, model_path=path, out_dir=out_dir, lm=ActorLM(actor, path))
