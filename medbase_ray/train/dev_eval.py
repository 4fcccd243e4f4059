"""Dev multiple-choice accuracy during training, through the eval stage in-process.

At each dev evaluation (`eval_steps`, and at the end) with `train.dev_benchmark`, rank 0
scores the eval benchmark's dev split (`cfg.eval`: benchmark, mode, prompts; no shots,
since they would be drawn from the same split) with the model being trained.
"""

from __future__ import annotations

import tempfile

import torch.distributed as dist


def benchmark_accuracy(model, tokenizer, config_yaml: str) -> float:
    """The six-language macro-average accuracy of `model` on the benchmark's dev split."""
    import yaml

    from medbase_ray.config import PipelineConfig
    from medbase_ray.eval import InProcessLM, run_eval

    cfg = PipelineConfig.model_validate(yaml.safe_load(config_yaml))
    ecfg = cfg.eval
    # The dev split is the one scored; no shots (the swap keeps the two splits distinct).
    ecfg.split, ecfg.dev_split, ecfg.k_shot, ecfg.base_url = ecfg.dev_split, ecfg.split, 0, None
    ecfg.bootstrap_samples = 0
    with tempfile.TemporaryDirectory(prefix="medbase-dev-eval-") as out:
        report = run_eval(cfg, out_dir=out, lm=InProcessLM(model, tokenizer, "in-training"))
    return float(report["accuracy"]["macro_average"]["accuracy"])


def dev_benchmark_accuracy(engine, tokenizer, config_yaml: str, rank: int) -> float:
    """benchmark_accuracy on rank 0, the same number on every rank (call on all ranks)."""
    import deepspeed
    import torch

    # ZeRO-3 holds a slice of each weight per rank: gather them for the duration.
    params = list(engine.module.parameters()) if engine.zero_optimization_stage() == 3 else []
    with deepspeed.zero.GatheredParameters(params):
        accuracy = benchmark_accuracy(engine.module, tokenizer, config_yaml) if rank == 0 else 0.0
    engine.train()  # InProcessLM switched the module to eval mode
    value = torch.tensor([accuracy], dtype=torch.float64)
    if dist.is_initialized():
        dist.broadcast(value, src=0)
    return float(value)
