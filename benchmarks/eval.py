"""Eval throughput: medbase's `loglikelihood` mode against `generate` mode and lm-eval.

Same model (the embedded tiny one unless --checkpoint), same benchmark items (the
bundled test split), one run, in-process, `--threads` torch threads for every row:
- medbase loglikelihood: `medbase eval --mode loglikelihood`'s runner;
- medbase generate: the same items, all 128 new tokens made (`min_new_tokens` =
  `max_new_tokens`: an untrained model would otherwise stop at once), as Apollo's
  128-token answers;
- lm-evaluation-harness (the peer a user would pick): its `hf` backend on the same
  checkpoint, through `lm_eval.simple_evaluate` on a task over medbase's own prompts
  (the context ending in "The correct answer is (", the option letters as choices,
  `acc`: medbase_ray/eval/lm_eval_task.py).
items/s counts the scoring only, not model loading: medbase's runner times its scoring
loop; lm-eval's row times its `loglikelihood` call (its `simple_evaluate` wall, which
adds building the task from the JSON file, is printed beside it). The process CPU
seconds of the same spans give items per CPU second, which the load of a shared machine
does not change; loglikelihood and lm-eval run back to back, generate last.

    .venv/bin/python benchmarks/eval.py            # the whole bundled test split
    .venv/bin/python benchmarks/eval.py --quick    # 1 item per source, no lm-eval, < 1 min
    .venv/bin/python benchmarks/eval.py --per-source 4

Goals: loglikelihood >= 10x generate; medbase loglikelihood >= 1.5x lm-eval's items/s,
with accuracies (micro, over items) within 0.5 point of each other.
Prints a Markdown table, then (last line) the JSON list of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from medbase_ray.config import PipelineConfig, load_config
from medbase_ray.corpus.readers import read_eval_items, sample_dir
from medbase_ray.eval import runner
from medbase_ray.eval.lm_eval_task import TASK, lm_eval_documents, write_task
from medbase_ray.models.checkpoint_info import resolve_model_settings
from medbase_ray.models.loading import resolve_dtype

GOAL_RATIO = 10.0
GOAL_VS_LM_EVAL = 1.5
GOAL_ACCURACY_POINTS = 0.5


def subset(items: list[dict], per_source: int | None) -> list[dict]:
    if per_source is None:
        return items
    taken: dict[str, int] = {}
    out = []
    for item in items:
        if taken.get(item["source"], 0) < per_source:
            taken[item["source"]] = taken.get(item["source"], 0) + 1
            out.append(item)
    return out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_medbase(cfg: PipelineConfig, out_dir: Path) -> dict:
    """One medbase eval run: items/s of its scoring loop (the runner's own timing), the
    process CPU seconds of that loop, and the micro accuracy."""
    cpu_s = 0.0
    score_items = runner.score_items

    async def timed_score_items(*args, **kwargs):  # the runner's own loop, CPU-timed
        nonlocal cpu_s
        start = time.process_time()  # every thread of the process (to_thread included)
        out = await score_items(*args, **kwargs)
        cpu_s += time.process_time() - start
        return out

    runner.score_items = timed_score_items
    try:
        report = runner.run_eval(cfg, out_dir=str(out_dir))
    finally:
        runner.score_items = score_items
    results = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    return {
        "items": report["items"],
        "elapsed_s": report["run"]["elapsed_s"],
        "items_per_s": report["run"]["items_per_s"],
        "cpu_s": cpu_s,
        "accuracy": sum(r["correct"] for r in results) / len(results),
        "macro_accuracy": report["accuracy"]["macro_average"]["accuracy"],
        "unextractable": report["unextractable"],
        "predictions": {r["id"]: r["prediction"] for r in results},
    }


def run_lm_eval(
    cfg: PipelineConfig, task_dir: Path, docs: list[dict], threads: int, batch_size: int
) -> dict:
    """lm-eval's `hf` backend on the checkpoint, the task of lm_eval_task.write_task."""
    import lm_eval  # heavy (torch, datasets, evaluate): only this row needs it
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(threads)
    settings = resolve_model_settings(cfg.model)
    lm = HFLM(
        pretrained=settings.path,
        dtype=resolve_dtype(settings.dtype, on_gpu=False),
        device="cpu",
        batch_size=batch_size,
    )
    scoring_s = cpu_s = 0.0
    score = lm.loglikelihood

    def timed_loglikelihood(requests, *args, **kwargs):  # lm-eval's own call, timed
        nonlocal scoring_s, cpu_s
        start, cpu = time.perf_counter(), time.process_time()
        out = score(requests, *args, **kwargs)
        scoring_s += time.perf_counter() - start
        cpu_s += time.process_time() - cpu
        return out

    lm.loglikelihood = timed_loglikelihood
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model=lm, tasks=[TASK], task_manager=TaskManager(include_path=str(task_dir)),
        log_samples=True, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
        torch_random_seed=0,
    )  # fmt: skip
    wall_s = time.perf_counter() - start
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    predictions = {}
    for s in samples:
        scores = [r[0] for r in s["filtered_resps"]]
        doc = docs[s["doc_id"]]
        predictions[doc["id"]] = doc["letters"][max(range(len(scores)), key=scores.__getitem__)]
    return {
        "items": len(samples),
        "elapsed_s": scoring_s,
        "wall_s": wall_s,
        "items_per_s": len(samples) / scoring_s,
        "cpu_s": cpu_s,
        "accuracy": out["results"][TASK]["acc,none"],
        "predictions": predictions,
    }


def eval_config(args: argparse.Namespace, test: Path, bench: Path, mode: str) -> PipelineConfig:
    return load_config(
        preset="tiny",
        overrides=[
            f"model.name_or_path={args.checkpoint}",
            f"eval.benchmark={test}",
            f"eval.dev_benchmark={bench / 'dev.json'}",
            f"eval.k_shot={args.k_shot}",
            f"eval.mode={mode}",
            f"eval.max_new_tokens={args.max_new_tokens}",
            f"eval.min_new_tokens={args.max_new_tokens}",
            f"eval.cpu_threads={args.threads}",
            "eval.bootstrap_samples=0",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 item per source")
    parser.add_argument("--per-source", type=int, help="at most this many items per source")
    parser.add_argument("--checkpoint", default="tiny", help="model directory (default: tiny)")
    parser.add_argument("--k-shot", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    # 1: on a shared machine torch's OpenMP threads spin against other jobs (measured:
    # 128 tokens in 2 s with 1 thread, 45 s with 2 while other work ran).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--lm-eval-batch-sizes",
        default="1,16",
        help="lm-eval hf batch sizes, one row each",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the lm-eval rows")
    args = parser.parse_args()
    load_before = uptime()

    bench = sample_dir() / "xmedbench"
    items, _ = read_eval_items(bench / "test.json")
    items = subset(items, 1 if args.quick else args.per_source)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        test = Path(tmp) / "test.json"
        raw = [{**i, "answer": f"({i['answer']})"} for i in items]
        test.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
        cfg = eval_config(args, test, bench, "loglikelihood")
        rows["medbase loglikelihood"] = run_medbase(cfg, Path(tmp) / "loglikelihood")
        peer_note = "skipped (--quick)" if args.quick else "skipped (--no-peers)"
        if not (args.no_peers or args.quick):
            peer_note = f"lm-eval {version('lm_eval')}"
            docs = lm_eval_documents(cfg)
            task_dir = write_task(docs, Path(tmp) / "lm_eval_task")
            for size in map(int, args.lm_eval_batch_sizes.split(",")):
                rows[f"lm-eval hf, batch_size {size}"] = run_lm_eval(
                    cfg, task_dir, docs, args.threads, size
                )
        # Generate last: loglikelihood and lm-eval run back to back, under like load.
        cfg = eval_config(args, test, bench, "generate")
        rows["medbase generate"] = run_medbase(cfg, Path(tmp) / "generate")
    load_after = uptime()
    report(args, rows, peer_note, load_before, load_after)


def report(
    args: argparse.Namespace,
    rows: dict[str, dict],
    peer_note: str,
    load_before: str,
    load_after: str,
) -> None:
    ll, gen = rows["medbase loglikelihood"], rows["medbase generate"]
    peers = {name: r for name, r in rows.items() if name.startswith("lm-eval")}
    print(f"\nEval throughput, in-process, model `{args.checkpoint}`, {ll['items']} items, "
          f"{args.k_shot}-shot, generate = {args.max_new_tokens} new tokens, "
          f"{args.threads} CPU thread(s); peer: {peer_note}\n")  # fmt: skip
    print(
        "| run | items | scoring s | items/s | CPU s | items per CPU s | accuracy % (micro)"
        " | same choice as medbase ll |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        same = sum(r["predictions"][k] == v for k, v in ll["predictions"].items())
        print(
            f"| {name} | {r['items']} | {r['elapsed_s']:.1f} | {r['items_per_s']:.2f} "
            f"| {r['cpu_s']:.1f} | {r['items'] / r['cpu_s']:.2f} | {100 * r['accuracy']:.1f} "
            f"| {same}/{len(ll['predictions'])} |"
        )
    if not peers:
        print(f"| lm-eval hf | | | | | | | {peer_note} |")
    ratio = ll["items_per_s"] / gen["items_per_s"]
    print(
        f"\nmedbase generate: six-language macro accuracy {100 * gen['macro_accuracy']:.1f}%, "
        f"{gen['unextractable']} unextractable. loglikelihood / generate items/s: "
        f"**{ratio:.1f}x** (goal >= {GOAL_RATIO:.0f}x)"
    )
    figures = [
        ("eval_loglikelihood_vs_generate_items_per_s_ratio", ratio, GOAL_RATIO, True),
        ("eval_loglikelihood_items_per_s", ll["items_per_s"], None, True),
        ("eval_generate_items_per_s", gen["items_per_s"], None, True),
        ("eval_loglikelihood_macro_accuracy", ll["macro_accuracy"], None, True),
        ("eval_generate_macro_accuracy", gen["macro_accuracy"], None, True),
    ]
    if peers:
        best_name, best = max(peers.items(), key=lambda kv: kv[1]["items_per_s"])
        vs_peer = ll["items_per_s"] / best["items_per_s"]
        # Per CPU second: what the shared machine's load does not change (1 thread each).
        per_cpu = {n: r["items"] / r["cpu_s"] for n, r in peers.items()}
        cpu_name = max(per_cpu, key=per_cpu.__getitem__)
        vs_peer_cpu = ll["items"] / ll["cpu_s"] / per_cpu[cpu_name]
        gap = 100 * abs(ll["accuracy"] - best["accuracy"])
        walls = ", ".join(f"{n}: {r['wall_s']:.1f} s" for n, r in peers.items())
        print(
            f"medbase loglikelihood / best lm-eval ({best_name}) items/s: **{vs_peer:.2f}x** "
            f"(goal >= {GOAL_VS_LM_EVAL}x); accuracy {100 * ll['accuracy']:.1f}% vs "
            f"{100 * best['accuracy']:.1f}%, difference {gap:.1f} points (goal <= "
            f"{GOAL_ACCURACY_POINTS}). Per CPU second, against {cpu_name}: "
            f"**{vs_peer_cpu:.2f}x**. lm-eval's simple_evaluate wall: {walls}."
        )
        figures += [
            ("eval_medbase_vs_lm_eval_hf_items_per_s_ratio", vs_peer, GOAL_VS_LM_EVAL, True),
            (
                "eval_medbase_vs_lm_eval_hf_items_per_cpu_s_ratio",
                vs_peer_cpu,
                GOAL_VS_LM_EVAL,
                True,
            ),
            ("eval_lm_eval_hf_items_per_s", best["items_per_s"], None, True),
            ("eval_medbase_loglikelihood_accuracy", ll["accuracy"], None, True),
            ("eval_lm_eval_hf_accuracy", best["accuracy"], None, True),
            ("eval_medbase_vs_lm_eval_accuracy_points", gap, GOAL_ACCURACY_POINTS, False),
        ]
    print(f"\nload before: {load_before}\nload after:  {load_after}\n")
    print(
        json.dumps(
            [
                {"name": n, "value": round(v, 4), "goal": g, "higher_is_better": h}
                for n, v, g, h in figures
            ]
        )
    )


if __name__ == "__main__":
    main()
