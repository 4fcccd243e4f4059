"""The eval stage: the XMedBench-format benchmark, three scoring modes, a report.

    from medbase_ray.eval import run_eval
    report = run_eval(cfg, model_path="runs/tiny/train/final")            # in-process
    report = run_eval(cfg, base_url="http://127.0.0.1:8000/v1")           # any endpoint

Names are imported on first use: `medbase_ray.config` imports this package for
`EvalConfig`, and must not pull in the runner (which imports the config) or numpy.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "EvalConfig": "medbase_ray.eval.config",
    "extract_answer": "medbase_ray.eval.extract",
    "EndpointLM": "medbase_ray.eval.lm",
    "InProcessLM": "medbase_ray.eval.lm",
    "continuation_logprob": "medbase_ray.eval.lm",
    "EvalError": "medbase_ray.eval.prompts",
    "Prompt": "medbase_ray.eval.prompts",
    "build_prompt": "medbase_ray.eval.prompts",
    "select_shots": "medbase_ray.eval.prompts",
    "APOLLO_COLUMNS": "medbase_ray.eval.report",
    "build_report": "medbase_ray.eval.report",
    "render_markdown": "medbase_ray.eval.report",
    "load_benchmark": "medbase_ray.eval.runner",
    "run_eval": "medbase_ray.eval.runner",
    "score_cloze": "medbase_ray.eval.scoring",
    "score_generate": "medbase_ray.eval.scoring",
    "score_loglikelihood": "medbase_ray.eval.scoring",
    "run_eval_on_ray": "medbase_ray.eval.remote",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
