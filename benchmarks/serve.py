"""Serve throughput and latency: the tiny model behind Ray Serve, batching on vs off.

    python benchmarks/serve.py            # >= 64 requests per level, 32 new tokens each
    python benchmarks/serve.py --quick    # >= 16 requests per level, 16 tokens, under a minute

One run, one local Ray, the same app deployed twice (one replica of 1 CPU each):
batching on (max_batch_size 32, --max-batch-size) and off (max_batch_size 1), each
measured while the other sits idle. At concurrency 1, 8 and 32, closed-loop clients
send greedy completions (fixed prompts, `max_tokens` new tokens) over HTTP; we report
requests/s and p50/p99 latency.
Goal: batching on serves >= 3x the requests/s of batching off at concurrency 32.
Prints a Markdown table, then (last line) one JSON list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from medbase_ray.net import free_port

CONCURRENCY = (1, 8, 32)
PORT_RANGE = range(18190, 18200)
PROMPTS = [
    "User:What is the first-line treatment of type 2 diabetes?\nAssistant:",
    "User:Quels sont les signes d'une pneumonie ?\nAssistant:",
    "User:¿Cuál es la dosis habitual de paracetamol en adultos?\nAssistant:",
    "User:高血压患者应该如何调整饮食？\nAssistant:",
]


async def load(url: str, concurrency: int, total: int, max_tokens: int) -> dict:
    """Closed loop: `concurrency` clients, each sending its next request when one ends."""
    import httpx

    latencies: list[float] = []
    statuses: list[int] = []
    next_index = iter(range(total))

    async def client(http: httpx.AsyncClient) -> None:
        for i in next_index:
            body = {
                "model": "tiny",
                "prompt": PROMPTS[i % len(PROMPTS)],
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            start = time.perf_counter()
            resp = await http.post(url, json=body)
            latencies.append(time.perf_counter() - start)
            statuses.append(resp.status_code)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall_s = time.perf_counter() - start
    if set(statuses) != {200}:
        raise RuntimeError(f"non-200 answers: {sorted(set(statuses))}")
    latencies.sort()
    return {
        "rps": total / wall_s,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def n_requests(concurrency: int, args: argparse.Namespace) -> int:
    """Enough requests for a p99 at low concurrency, several rounds at high."""
    return max(args.min_requests, args.rounds * concurrency)


def deploy(port: int, batch_size: int) -> dict[str, str]:
    """Both variants at once (their replicas load in parallel); URL of each."""
    from ray import serve

    from medbase_ray.config import load_config
    from medbase_ray.serve.app import build_app
    from medbase_ray.serve.config import ServeConfig

    cfg = load_config(preset="tiny")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    targets, urls = [], {}
    for mode, size in (("on", batch_size), ("off", 1)):
        fields = cfg.serve.model_dump() | {"max_batch_size": size, "model_id": "tiny"}
        fields["access_log"] = False  # a log line per request would be measured too
        app = build_app("tiny", ServeConfig.model_validate(fields), cfg.model)
        targets.append(serve.RunTarget(app, name=f"bench-{mode}", route_prefix=f"/bench-{mode}"))
        urls[mode] = f"http://127.0.0.1:{port}/bench-{mode}/v1/completions"
    serve.run_many(targets)
    return urls


def measure(url: str, args: argparse.Namespace) -> dict:
    """One variant, at each concurrency in turn (the other variant sits idle)."""
    asyncio.run(load(url, 4, 8, args.max_tokens))  # warm-up: first batches, caches
    return {c: asyncio.run(load(url, c, n_requests(c, args), args.max_tokens)) for c in CONCURRENCY}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under a minute")
    parser.add_argument("--min-requests", type=int, help="requests per concurrency level, at least")
    parser.add_argument("--rounds", type=int, help="requests per client, at least")
    parser.add_argument("--max-tokens", type=int, help="new tokens per request")
    parser.add_argument(
        "--max-batch-size", type=int, default=32, help="serve.max_batch_size with batching on"
    )
    args = parser.parse_args()
    args.min_requests = args.min_requests or (16 if args.quick else 64)
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.max_tokens = args.max_tokens or (16 if args.quick else 32)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")

    import ray

    from medbase_ray.models.tiny import tiny_model_dir
    from medbase_ray.ray_runtime import init_ray

    tiny_model_dir()  # build the embedded model once, before any replica wants it
    batch_size = args.max_batch_size
    init_ray(num_cpus=os.cpu_count())
    port = free_port(PORT_RANGE)
    start = time.perf_counter()
    urls = deploy(port, batch_size)
    results = {mode: measure(url, args) for mode, url in urls.items()}
    ray.shutdown()

    print(
        f"\nServe, tiny model, {args.min_requests}+ requests per level, {args.max_tokens} new "
        f"tokens each, batching on = max_batch_size {batch_size} "
        f"({time.perf_counter() - start:.0f} s)\n"
    )
    print("| batching | concurrency | requests/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode in ("on", "off"):
        for c in CONCURRENCY:
            r = results[mode][c]
            print(f"| {mode} | {c} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |")
    ratio = results["on"][32]["rps"] / results["off"][32]["rps"]
    print(f"\nbatching on / off at concurrency 32: {ratio:.2f}x requests/s (goal >= 3x)\n")
    figures = [
        {
            "name": "serve_rps_ratio_batched_c32",
            "value": round(ratio, 2),
            "goal": 3.0,
            "higher_is_better": True,
        },
    ]
    for c in CONCURRENCY:
        on = results["on"][c]
        figures.append(
            {
                "name": f"serve_rps_batched_c{c}",
                "value": round(on["rps"], 2),
                "goal": None,
                "higher_is_better": True,
            }
        )
        figures.append(
            {
                "name": f"serve_p99_ms_batched_c{c}",
                "value": round(on["p99_ms"], 1),
                "goal": None,
                "higher_is_better": False,
            }
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
