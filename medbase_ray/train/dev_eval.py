"""Dev multiple-choice accuracy during training, through the eval stage in-process.

At each dev evaluation (`eval_steps`, and at the end) with `train.dev_benchmark`, rank 0
scores the eval benchmark's dev split (`cfg.eval`: benchmark, mode, prompts; no shots,
since they would be drawn from the same split) with the model being trained.
"""

from __future__ import annotations

import tempfile

import torch.distributed as dist
import yaml

from medbase_ray.config import PipelineConfig
from medbase_ray.eval.lm import InProcessLM
from medbase_ray.eval.runner import run_eval


def benchmark_accuracy(model, tokenizer, config_yaml: str) -> dict[str, float]:
    """Accuracy of `model` on the benchmark's dev split: `dev_accuracy` (the macro
    average over languages) and `dev_accuracy_<language>` for each language."""
    cfg = PipelineConfig.model_validate(yaml.safe_load(config_yaml))
    ecfg = cfg.eval
    # The dev split is the one scored; no shots (the swap keeps the two splits distinct).
    ecfg.split, ecfg.dev_split, ecfg.k_shot, ecfg.base_url = ecfg.dev_split, ecfg.split, 0, None
    ecfg.bootstrap_samples = 0
    with tempfile.TemporaryDirectory(prefix="medbase-dev-eval-") as out:
        report = run_eval(cfg, out_dir=out, lm=InProcessLM(model, tokenizer, "in-training"))
    accuracy = report["accuracy"]
    out = {"dev_accuracy": float(accuracy["macro_average"]["accuracy"])}
    for lang, value in sorted(accuracy["languages"].items()):
        out[f"dev_accuracy_{lang}"] = float(value["accuracy"])
    return out


def dev_benchmark_accuracy(engine, tokenizer, config_yaml: str, rank: int) -> dict[str, float]:
    """benchmark_accuracy on rank 0, the same figures on every rank (call on all ranks)."""
    import deepspeed  # in the workers only, as in loop.setup_engine

    # ZeRO-3 holds a slice of each weight per rank: gather them for the duration.
    params = list(engine.module.parameters()) if engine.zero_optimization_stage() == 3 else []
    with deepspeed.zero.GatheredParameters(params):
        figures = benchmark_accuracy(engine.module, tokenizer, config_yaml) if rank == 0 else {}
    engine.train()  # InProcessLM switched the module to eval mode
    if dist.is_initialized():
        box = [figures]
        dist.broadcast_object_list(box, src=0)
        figures = box[0]
    return figures
