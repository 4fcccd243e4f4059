"""Eval throughput: items/s of `loglikelihood` mode against `generate` mode.

Same model (the embedded tiny one unless --checkpoint), same benchmark items (the
bundled test split), one run, in-process. Generate mode makes all 128 new tokens
(`min_new_tokens` = `max_new_tokens`: an untrained model would otherwise stop at once),
as Apollo's 128-token answers. items/s counts the scoring only, not model loading.

    .venv/bin/python benchmarks/eval.py            # the whole bundled test split
    .venv/bin/python benchmarks/eval.py --quick    # 1 item per source, under a minute
    .venv/bin/python benchmarks/eval.py --per-source 4

Prints a Markdown table, then (last line) the JSON list of figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from medbase_ray.config import load_config
from medbase_ray.corpus.readers import read_eval_items, sample_dir
from medbase_ray.eval.runner import run_eval

GOAL_RATIO = 10.0


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
    args = parser.parse_args()

    bench = sample_dir() / "xmedbench"
    items, _ = read_eval_items(bench / "test.json")
    items = subset(items, 1 if args.quick else args.per_source)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        test = Path(tmp) / "test.json"
        raw = [{**i, "answer": f"({i['answer']})"} for i in items]
        test.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
        for mode in ("loglikelihood", "generate"):
            cfg = load_config(
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
            report = run_eval(cfg, out_dir=str(Path(tmp) / mode))
            rows.append(
                {
                    "mode": mode,
                    "items": report["items"],
                    "elapsed_s": report["run"]["elapsed_s"],
                    "items_per_s": report["run"]["items_per_s"],
                    "macro_accuracy": report["accuracy"]["macro_average"]["accuracy"],
                    "unextractable": report["unextractable"],
                }
            )

    ll, gen = rows
    ratio = ll["items_per_s"] / gen["items_per_s"]
    print(f"\nEval throughput, in-process, model `{args.checkpoint}`, {ll['items']} items, "
          f"{args.k_shot}-shot, generate = {args.max_new_tokens} new tokens, "
          f"{args.threads} CPU thread(s)\n")  # fmt: skip
    print("| mode | items | seconds | items/s | six-language accuracy % | unextractable |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['mode']} | {r['items']} | {r['elapsed_s']:.1f} | {r['items_per_s']:.2f} "
            f"| {100 * r['macro_accuracy']:.1f} | {r['unextractable']} |"
        )
    print(f"\nloglikelihood / generate items/s: **{ratio:.1f}x** (goal >= {GOAL_RATIO:.0f}x)\n")
    figures = [
        {
            "name": "eval_loglikelihood_vs_generate_items_per_s_ratio",
            "value": round(ratio, 2),
            "goal": GOAL_RATIO,
            "higher_is_better": True,
        },
        {
            "name": "eval_loglikelihood_items_per_s",
            "value": ll["items_per_s"],
            "goal": None,
            "higher_is_better": True,
        },
        {
            "name": "eval_generate_items_per_s",
            "value": gen["items_per_s"],
            "goal": None,
            "higher_is_better": True,
        },
        {
            "name": "eval_loglikelihood_macro_accuracy",
            "value": round(ll["macro_accuracy"], 4),
            "goal": None,
            "higher_is_better": True,
        },
        {
            "name": "eval_generate_macro_accuracy",
            "value": round(gen["macro_accuracy"], 4),
            "goal": None,
            "higher_is_better": True,
        },
    ]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
