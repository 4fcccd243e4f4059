"""medbase's loglikelihood prompts as an lm-evaluation-harness task.

lm-eval then scores what `medbase eval --mode loglikelihood` scores: per item, the
prompt ending in "The correct answer is (" and each option letter after it (`acc`).

    docs = lm_eval_documents(cfg)      # one per item: prompt, choices, letters, target
    write_task(docs, task_dir)         # <task_dir>/medbase_xmedbench.yaml + docs.jsonl
    lm_eval --model hf --model_args pretrained=<checkpoint> \
        --include_path <task_dir> --tasks medbase_xmedbench

benchmarks/eval.py compares lm-eval's `hf` backend with medbase on it;
tests/eval/test_lm_eval.py runs lm-eval against `medbase serve` with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medbase_ray.config import PipelineConfig
from medbase_ray.eval.prompts import chat_renderer
from medbase_ray.eval.runner import load_benchmark, make_prompts
from medbase_ray.models.checkpoint_info import resolve_model_settings
from medbase_ray.models.loading import load_tokenizer

TASK = "medbase_xmedbench"
TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: multiple_choice
doc_to_text: prompt
doc_to_choice: choices
doc_to_target: target
target_delimiter: ""
metric_list:
  - metric: acc
"""


def token_boundary(context: str, letters: Sequence[str], tokenizer: Any) -> int:
    """Where lm-eval's context must end so that it scores the token medbase scores.

    lm-eval splits context and continuation at a token boundary (the tokens of
    `context + choice` after those of `context`), medbase at a character, scoring the
    token that crosses it. Where a letter merges with what precedes it (Chinese prompts:
    "是(" + "A" is "是" "(A"), the boundary moves back to where that token starts.
    """
    split = len(context)
    for letter in letters:
        offsets = tokenizer(context + letter, return_offsets_mapping=True)["offset_mapping"]
        split = min(split, next(start for start, end in offsets if end > len(context)))
    return split


def lm_eval_documents(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """One document per benchmark item of `cfg.eval`: medbase's own loglikelihood prompt,
    cut at `token_boundary`; each choice is the rest of it and a letter."""
    items, dev, _, _ = load_benchmark(cfg.eval)
    settings = resolve_model_settings(cfg.model)
    tokenizer = load_tokenizer(settings.tokenizer_path, cfg.model.trust_remote_code)
    render = chat_renderer(settings.chat_format, tokenizer)
    prompts, _ = make_prompts(cfg.eval, items, dev, render, tokenizer)
    docs = []
    for item in items:
        p = prompts[item["id"]]
        letters = list(p.continuations)
        split = token_boundary(p.context, letters, tokenizer)
        context, carried = p.context[:split], p.context[split:]
        doc = {"id": item["id"], "prompt": context, "letters": letters}
        choices = [carried + letter for letter in letters]
        docs.append(doc | {"choices": choices, "target": letters.index(item["answer"])})
    return docs


def write_task(docs: Sequence[dict[str, Any]], task_dir: Path, task: str = TASK) -> Path:
    """`<task_dir>/<task>.yaml` over `<task_dir>/docs.jsonl`; returns the task directory."""
    task_dir.mkdir(parents=True, exist_ok=True)
    path = task_dir / "docs.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), "utf-8")
    (task_dir / f"{task}.yaml").write_text(TASK_YAML.format(task=task, docs=path), "utf-8")
    return task_dir
