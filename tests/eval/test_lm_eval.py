"""lm-evaluation-harness as a client of `medbase serve` (issue 18), kept so by this test.

A small custom lm-eval task over the bundled benchmark holds, per item, the prompt that
`medbase eval --mode loglikelihood` scores (context ending in "The correct answer is (",
the option letters as choices). lm-eval runs it against the Serve endpoint
(`local-completions`: `echo, logprobs: 1, max_tokens: 1`, the server's own tokenizer
through /tokenizer_info and /tokenize) and with its `hf` backend on the same checkpoint
in this process; both accuracies, and every item's choice, equal medbase's own.

The same by hand, against a running `medbase serve tiny`:

    lm_eval --model local-completions --include_path <task dir> --tasks medbase_xmedbench \
        --model_args model=tiny,base_url=http://127.0.0.1:8000/v1/completions,num_concurrent=4
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medbase_ray.config import load_config
from medbase_ray.corpus.readers import sample_dir
from medbase_ray.eval.lm_eval_task import TASK, write_task
from medbase_ray.eval.prompts import build_prompt, chat_renderer
from medbase_ray.eval.runner import load_benchmark, run_eval
from medbase_ray.models.loading import load_tokenizer

pytestmark = pytest.mark.integration

PER_SOURCE = 2  # items per source: a subset keeps the test short (14 items, 56 requests)


def subset(tmp_path: Path) -> list[dict]:
    """Items of the bundled benchmark whose letter continuation is one token after the
    context's tokens. (In the Chinese prompts "是(" + "A" tokenizes as "是" "(A": lm-eval
    splits context and continuation at a token boundary, medbase at the character, so
    such items would be scored differently by design.)"""
    raw = json.loads((sample_dir() / "xmedbench" / "test.json").read_text(encoding="utf-8"))
    picked, seen = [], {}
    for item in raw:
        if item["source"] in ("medqa-mcmle", "cmmlu-medical"):
            continue
        if seen.get(item["source"], 0) < PER_SOURCE:
            seen[item["source"]] = seen.get(item["source"], 0) + 1
            picked.append(item)
    return picked


def test_lm_eval_against_serve_equals_its_hf_backend_and_medbase_eval(
    tiny_endpoint, tmp_path: Path, monkeypatch
) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(subset(tmp_path), ensure_ascii=False), encoding="utf-8")
    cfg = load_config(
        preset="tiny",
        overrides=[
            f"eval.benchmark={bench}",
            f"model.name_or_path={tiny_endpoint.model_path}",
            "eval.mode=loglikelihood", "eval.k_shot=0",
            "eval.bootstrap_samples=0", "eval.cpu_threads=1",
        ],
    )  # fmt: skip
    ours = run_eval(cfg, out_dir=str(tmp_path / "medbase"))
    results = {
        r["id"]: r
        for r in map(json.loads, (tmp_path / "medbase" / "results.jsonl").read_text().splitlines())
    }

    # The task's documents: medbase's own prompt and letters for each item.
    items, dev, _, _ = load_benchmark(cfg.eval)
    tokenizer = load_tokenizer(tiny_endpoint.model_path)
    render = chat_renderer("apollo", tokenizer)
    docs = []
    for item in items:
        p = build_prompt(
            item, dev, mode="loglikelihood", k_shot=0, max_prompt_tokens=4096, seed=0,
            render=render, count_tokens=len,
        )  # fmt: skip
        letters = list(p.continuations)
        for letter in letters:  # the subset's premise: one token after the context's
            context_ids = tokenizer(p.context)["input_ids"]
            whole = tokenizer(p.context + letter)["input_ids"]
            assert whole[:-1] == context_ids, item["id"]
        doc = {"id": item["id"], "prompt": p.context, "choices": letters}
        docs.append(doc | {"target": letters.index(item["answer"])})
    task_dir = write_task(docs, tmp_path / "tasks")
    tasks = TaskManager(include_path=str(task_dir))

    def run(model: str, model_args: dict) -> tuple[float, list[int]]:
        out = lm_eval.simple_evaluate(
            model=model, model_args=model_args, tasks=[TASK], task_manager=tasks,
            batch_size=1, log_samples=True, random_seed=0, numpy_random_seed=0,
            torch_random_seed=0,
        )  # fmt: skip
        samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
        chosen = [
            max(range(len(s["filtered_resps"])), key=lambda i: s["filtered_resps"][i][0])
            for s in samples
        ]
        return out["results"][TASK]["acc,none"], chosen

    served = {
        "model": tiny_endpoint.model,
        "base_url": f"{tiny_endpoint.base_url}/completions",
        "num_concurrent": 4,
        "max_retries": 2,
    }
    os.environ.pop("OPENAI_API_KEY", None)
    # lm-eval finds the server's tokenizer routes, so it counts tokens as the server does.
    from lm_eval.utils import check_remote_tokenizer_support

    assert check_remote_tokenizer_support(served["base_url"])
    served_acc, served_choice = run("local-completions", served)
    hf_acc, hf_choice = run(
        "hf", {"pretrained": tiny_endpoint.model_path, "dtype": "float32", "device": "cpu"}
    )

    medbase_choice = [doc["choices"].index(results[doc["id"]]["prediction"]) for doc in docs]
    assert len(medbase_choice) == len(items) == 7 * PER_SOURCE
    assert served_choice == hf_choice == medbase_choice
    n_right = sum(r["correct"] for r in results.values())
    assert served_acc == hf_acc == pytest.approx(n_right / len(items))
    assert sum(s["correct"] for s in ours["accuracy"]["sources"].values()) == n_right
