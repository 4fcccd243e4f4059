"""Serve throughput and latency: the tiny model on Ray Serve (batching on, off) and a plain server.

    python benchmarks/serve.py            # >= 64 requests per level, 32 new tokens each
    python benchmarks/serve.py --quick    # >= 16 requests per level, 16 tokens, no peer

One run, one local Ray, the same app deployed twice (one replica of 1 CPU each):
batching on (max_batch_size 32, --max-batch-size) and off (max_batch_size 1), each
measured while the other sits idle. At concurrency 1, 8 and 32, closed-loop clients
send greedy completions (fixed prompts, `max_tokens` new tokens) over HTTP; we report
requests/s and p50/p99 latency. Then the peer a user would write instead of Serve: a
plain FastAPI + uvicorn server calling `transformers` `generate` per request, one process
with the torch threads of one replica (`--plain-threads`, 1), same model, prompts and
clients (`plain_server`).
Goals: batching on serves >= 3x the requests/s of batching off at concurrency 32, and
at least the plain server's requests/s there.
Prints a Markdown table, then (last line) one JSON list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version

from pydantic import BaseModel

from medbase_ray.net import free_port, wait_for_port

CONCURRENCY = (1, 8, 32)
PORT_RANGE = range(18190, 18200)
PLAIN_PORT_RANGE = range(18431, 18441)
GOAL_VS_PLAIN = 1.0  # medbase's Serve deployment serves at least what the plain server does
LABELS = {
    "on": "medbase Serve, batching on",
    "off": "medbase Serve, batching off",
    "plain": "plain FastAPI + transformers generate (no Serve)",
}
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
    new_tokens: list[int] = []
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
            if resp.status_code == 200:
                new_tokens.append(resp.json()["usage"]["completion_tokens"])

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
        "new_tokens": statistics.mean(new_tokens),
    }


class Completion(BaseModel):
    """The plain server's request body (module level: FastAPI resolves the annotation here)."""

    model: str
    prompt: str
    max_tokens: int = 16
    temperature: float = 0.0


def plain_server(port: int, model_dir: str, threads: int) -> None:
    """The peer: what a user writes in an afternoon without Serve. FastAPI + uvicorn, one
    process, `transformers` `generate` per request (a sync route: FastAPI runs it in its
    thread pool), greedy, the OpenAI completions shape."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)  # the CPUs of one Serve replica (num_cpus)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    app = FastAPI()

    @app.post("/v1/completions")
    def complete(req: Completion) -> dict:
        enc = tokenizer(req.prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=req.max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, enc["input_ids"].shape[1] :]
        text = tokenizer.decode(new, skip_special_tokens=True)
        n_prompt = enc["input_ids"].shape[1]
        return {
            "object": "text_completion",
            "model": req.model,
            "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": len(new),
                "total_tokens": n_prompt + len(new),
            },
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


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


def measure_plain(model_dir: str, port: int, args: argparse.Namespace) -> dict:
    """The FastAPI peer in its own process (its own GIL, as a replica has), then stopped."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--plain-server", str(port), model_dir, str(args.plain_threads)]
    )
    try:
        wait_for_port(port, 300, process=server)
        return measure(f"http://127.0.0.1:{port}/v1/completions", args)
    finally:
        server.terminate()
        server.wait(30)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under a minute")
    parser.add_argument("--min-requests", type=int, help="requests per concurrency level, at least")
    parser.add_argument("--rounds", type=int, help="requests per client, at least")
    parser.add_argument("--max-tokens", type=int, help="new tokens per request")
    parser.add_argument(
        "--max-batch-size", type=int, default=32, help="serve.max_batch_size with batching on"
    )
    parser.add_argument("--port", type=int, help="Serve's HTTP port (default: a free one)")
    parser.add_argument("--plain-port", type=int, help="the FastAPI peer's port (default: free)")
    parser.add_argument(
        "--plain-threads", type=int, default=1, help="the peer's torch threads (a replica's CPUs)"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the FastAPI peer")
    parser.add_argument("--plain-server", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        port, model_dir, threads = args.plain_server
        plain_server(int(port), model_dir, int(threads))
        return
    args.min_requests = args.min_requests or (16 if args.quick else 64)
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.max_tokens = args.max_tokens or (16 if args.quick else 32)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")

    import ray

    from medbase_ray.models.tiny import tiny_model_dir
    from medbase_ray.ray_runtime import init_ray

    load_before = uptime()
    model_dir = str(tiny_model_dir())  # built once, before any replica wants it
    batch_size = args.max_batch_size
    init_ray(num_cpus=os.cpu_count())
    port = args.port or free_port(PORT_RANGE)
    start = time.perf_counter()
    urls = deploy(port, batch_size)
    results = {mode: measure(url, args) for mode, url in urls.items()}
    ray.shutdown()
    peer = "skipped (--quick)" if args.quick else "skipped (--no-peers)"
    if not (args.no_peers or args.quick):
        plain_port = args.plain_port or free_port(PLAIN_PORT_RANGE)
        results["plain"] = measure_plain(model_dir, plain_port, args)
        peer = f"FastAPI {version('fastapi')}, uvicorn {version('uvicorn')}, " + (
            f"transformers {version('transformers')}, torch {version('torch')}"
        )
    load_after = uptime()

    print(
        f"\nServe, tiny model, {args.min_requests}+ requests per level, {args.max_tokens} new "
        f"tokens each, batching on = max_batch_size {batch_size} "
        f"({time.perf_counter() - start:.0f} s); peer: {peer}\n"
    )
    print("| server | concurrency | requests/s | p50 ms | p99 ms | new tokens/request |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode, label in LABELS.items():
        if mode not in results:
            print(f"| {label} | | | | | {peer} |")
            continue
        for c in CONCURRENCY:
            r = results[mode][c]
            print(
                f"| {label} | {c} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} "
                f"| {r['new_tokens']:.1f} |"
            )
    ratio = results["on"][32]["rps"] / results["off"][32]["rps"]
    print(f"\nbatching on / off at concurrency 32: {ratio:.2f}x requests/s (goal >= 3x)")
    figures = [("serve_rps_ratio_batched_c32", ratio, 3.0, True)]
    if "plain" in results:
        vs_plain = results["on"][32]["rps"] / results["plain"][32]["rps"]
        print(
            f"medbase Serve (batching on) / plain FastAPI + generate at concurrency 32: "
            f"**{vs_plain:.2f}x** requests/s (goal >= {GOAL_VS_PLAIN:.0f}x)"
        )
        figures.append(("serve_vs_plain_fastapi_rps_ratio_c32", vs_plain, GOAL_VS_PLAIN, True))
    print(f"\nload before: {load_before}\nload after:  {load_after}\n")
    for c in CONCURRENCY:
        on = results["on"][c]
        figures.append((f"serve_rps_batched_c{c}", on["rps"], None, True))
        figures.append((f"serve_p99_ms_batched_c{c}", on["p99_ms"], None, False))
        if "plain" in results:
            figures.append((f"plain_fastapi_rps_c{c}", results["plain"][c]["rps"], None, True))
            figures.append(
                (f"plain_fastapi_p99_ms_c{c}", results["plain"][c]["p99_ms"], None, False)
            )
    print(
        json.dumps(
            [
                {"name": n, "value": round(v, 2), "goal": g, "higher_is_better": h}
                for n, v, g, h in figures
            ]
        )
    )


if __name__ == "__main__":
    main()
