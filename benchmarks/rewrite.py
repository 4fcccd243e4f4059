"""Rewrite throughput against a local teacher with a fixed 200 ms latency.

    python benchmarks/rewrite.py            # 4096 dialogue items
    python benchmarks/rewrite.py --quick    # 1024 items, under a minute, no ray.data.llm row

Measures, in the same run against the same server (a separate process, so it does not
share the client's GIL): the rewrite stage (Ray Data, actors with AsyncOpenAI, 64
requests in flight); its core alone (one asyncio loop, no Ray); Apollo's approach (a
ThreadPoolExecutor of 64 threads calling the synchronous openai client,
OpenAIGPT_datagen_multithread.py); Ray's own batch path for an OpenAI-compatible
endpoint, `ray.data.llm`'s HTTP request processor (the peer a Ray user would pick; its
configuration in run_ray_data_llm); and the time a re-run spends skipping finished work.
The limit is 64 / 0.2 s = 320 requests/s; one dialogue item is one request. Client CPU
per item (process time) does not depend on what else the machine runs; the rates do.
Goal: medbase's steady requests/s >= ray.data.llm's. Prints a Markdown table, then one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medbase_ray.net import free_port, wait_for_port

LATENCY_S = 0.2
IN_FLIGHT = 64
PORT_RANGE = range(18380, 18400)
PEER_ACTORS = 16  # ray.data.llm: 16 actors x 4 one-row batches = 64 in flight


def serve(port: int) -> None:
    """The teacher: answers every chat request after LATENCY_S with a valid dialogue
    made from the prompt's passage, and counts first/last request times."""
    import asyncio

    from aiohttp import web

    times: list[float] = []
    in_flight = {"now": 0, "peak": 0}

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        times.append(time.monotonic())
        in_flight["now"] += 1
        in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
        prompt = body["messages"][-1]["content"]
        await asyncio.sleep(LATENCY_S)
        in_flight["now"] -= 1
        passage = prompt.split("<text>", 1)[-1].split("</text>", 1)[0].strip()
        text = f"<Patient>{passage[:40]}</Patient>\n<Doctor>{passage}</Doctor>"
        return web.json_response(
            {
                "id": "bench",
                "object": "chat.completion",
                "created": 0,
                "model": "bench",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
            }
        )

    async def stats(request: web.Request) -> web.Response:
        data = {"times": list(times), "peak_in_flight": in_flight["peak"]}
        times.clear()
        in_flight["peak"] = 0
        return web.json_response(data)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def server_stats(base: str) -> dict:
    """Requests/s as the server saw them: over the whole run (first to last request)
    and steady (the middle 80% of requests: no actor start-up ramp, no tail)."""
    import httpx

    data = httpx.post(f"{base}/stats").json()
    times = sorted(data["times"])
    n = len(times)
    lo, hi = int(0.1 * n), int(0.9 * n) - 1
    return {
        "requests": n,
        "peak_in_flight": data["peak_in_flight"],
        "whole_per_s": (n - 1) / max(times[-1] - times[0], 1e-9) if n > 1 else 0.0,
        "steady_per_s": (hi - lo) / max(times[hi] - times[lo], 1e-9) if hi > lo else 0.0,
    }


def make_input(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            text = f"Passage {i}: hypertension is managed with lifestyle changes and medication."
            row = {"id": f"p{i}", "source": "bench", "language": "en", "text": text}
            f.write(json.dumps(row) + "\n")


def load_rows(input_path: Path) -> list[dict]:
    return [json.loads(line) for line in input_path.open(encoding="utf-8")]


def run_apollo_threads(base_url: str, rows: list[dict], workers: int) -> tuple[float, float, int]:
    """Apollo's datagen loop (OpenAIGPT_datagen_multithread.py): one sync client, a
    thread per request in flight. Returns (wall s, CPU s, items parsed)."""
    import openai

    from medbase_ray.rewrite.parsing import Rejected, parse_dialogue
    from medbase_ray.rewrite.prompts import load_prompts

    prompts = load_prompts()
    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=5, timeout=60)

    def one(row: dict) -> bool:
        prompt = prompts.render("dialogue", row["language"], text=row["text"])
        r = client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": prompt}], max_tokens=512
        )
        try:
            parse_dialogue(r.choices[0].message.content or "")
            return True
        except Rejected:
            return False

    cpu, start = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ok = sum(pool.map(one, rows))
    return time.perf_counter() - start, time.process_time() - cpu, ok


def run_ray_data_llm(base_url: str, rows: list[dict], actors: int) -> tuple[float, int]:
    """Ray's own batch path for an OpenAI-compatible endpoint: `ray.data.llm`'s HTTP
    request processor (`build_processor(HttpRequestProcessorConfig(...))`), the same
    prompt, the reply parsed as the stage parses it. Returns (wall s, items parsed).

    Each of its actors sends a batch's requests one after another and runs up to 4
    batches of a block at once (Ray Data's async-UDF default), so 64 in flight takes a
    fixed pool of 16 actors (an int `concurrency` autoscales from 1) of one-row batches,
    blocks of 16 rows; the actors reserve 1/16 CPU each (they wait on the network)."""
    import ray
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    from medbase_ray.rewrite.parsing import Rejected, parse_dialogue
    from medbase_ray.rewrite.prompts import load_prompts

    prompts = load_prompts()

    def preprocess(row: dict) -> dict:
        prompt = prompts.render("dialogue", row["language"], text=row["text"])
        messages = [{"role": "user", "content": prompt}]
        return {"payload": {"model": "bench", "messages": messages, "max_tokens": 512}}

    def postprocess(row: dict) -> dict:
        try:
            parse_dialogue(row["http_response"]["choices"][0]["message"]["content"] or "")
            return {"ok": True}
        except Rejected:
            return {"ok": False}

    config = HttpRequestProcessorConfig(
        url=f"{base_url}/chat/completions",
        batch_size=1,
        concurrency=(actors, actors),
        max_retries=5,
        http_request_stage={"num_cpus": 1 / actors},
    )
    processor = build_processor(config, preprocess=preprocess, postprocess=postprocess)
    blocks = max(1, len(rows) // 16)  # an actor runs a block's batches, 4 at once
    start = time.perf_counter()
    ok = sum(
        r["ok"] for r in processor(ray.data.from_items(rows, override_num_blocks=blocks)).take_all()
    )
    return time.perf_counter() - start, ok


def run_core(base_url: str, rows: list[dict], in_flight: int) -> tuple[float, float, int]:
    """The stage's core without Ray: one asyncio loop, the Teacher, process_items."""
    import asyncio

    from pydantic import SecretStr

    from medbase_ray.rewrite.prompts import load_prompts
    from medbase_ray.rewrite.tasks import Checks, generate_items, process_items
    from medbase_ray.rewrite.teacher import Teacher, TeacherSettings

    items = generate_items(rows, ["dialogue"])
    settings = TeacherSettings(
        base_url, "bench", SecretStr("EMPTY"), in_flight, None, 5, 60, 0.7, 512
    )

    async def main() -> int:
        teacher = Teacher(settings)
        results = await process_items(items, teacher, load_prompts(), Checks(2, 4000, 8000, 40))
        await teacher.close()
        return sum(r["reason"] is None for r in results)

    cpu, start = time.process_time(), time.perf_counter()
    ok = asyncio.run(main())
    return time.perf_counter() - start, time.process_time() - cpu, ok


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def ray_version() -> str:
    from importlib.metadata import version

    return version("ray")


def run_peer(base_url: str, rows: list[dict]) -> dict:
    """The ray.data.llm row, or why it could not run (its error, as raised)."""
    try:
        wall_s, ok = run_ray_data_llm(base_url, rows, PEER_ACTORS)
    except Exception as e:  # the row says why instead of disappearing
        return {"error": f"failed: {type(e).__name__}: {e}".replace("\n", " ")[:300]}
    if ok != len(rows):
        return {"error": f"parsed {ok} of {len(rows)} replies"}
    return {"wall_s": wall_s}


def main() -> None:
    parser = argparse.ArgumentParser(description="rewrite throughput benchmark")
    parser.add_argument("--quick", action="store_true", help="1024 items (under a minute)")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--actors", type=int, default=2, help="rewrite.num_actors")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    n = args.items or (1024 if args.quick else 4096)

    from medbase_ray.config import PipelineConfig
    from medbase_ray.ray_runtime import init_ray
    from medbase_ray.rewrite.pipeline import run_rewrite

    port = free_port(PORT_RANGE)
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    base = f"http://127.0.0.1:{port}"
    load_before = uptime()
    try:
        wait_for_port(port, process=server)
        with tempfile.TemporaryDirectory() as tmp:
            input_path = Path(tmp) / "passages.jsonl"
            make_input(input_path, n)
            rows = load_rows(input_path)
            cfg = PipelineConfig.model_validate(
                {
                    "run": {"root": str(Path(tmp) / "runs"), "name": "bench"},
                    "rewrite": {
                        "input": str(input_path),
                        "tasks": ["dialogue"],
                        "base_url": f"{base}/v1",
                        "max_in_flight": IN_FLIGHT,
                        "num_actors": args.actors,
                    },
                }
            )
            init_ray(num_cpus=os.cpu_count())  # started once, outside the timings
            server_stats(base)

            start = time.perf_counter()
            summary = run_rewrite(cfg)
            ours_s = time.perf_counter() - start
            ours_server = server_stats(base)
            assert summary["out"] == n, summary

            start = time.perf_counter()
            again = run_rewrite(cfg)
            resume_s = time.perf_counter() - start
            assert again["skipped"] == n and again["usage"]["requests"] == 0, again

            core_s, core_cpu_s, core_ok = run_core(f"{base}/v1", rows, IN_FLIGHT)
            core_server = server_stats(base)
            apollo_s, apollo_cpu_s, apollo_ok = run_apollo_threads(f"{base}/v1", rows, IN_FLIGHT)
            apollo_server = server_stats(base)
            assert core_ok == apollo_ok == n
            peer = run_peer(f"{base}/v1", rows) if not args.quick else None
            peer_server = server_stats(base) if peer and "error" not in peer else None
    finally:
        server.terminate()
        server.wait(10)
    load_after = uptime()

    limit = IN_FLIGHT / LATENCY_S
    table = [
        (f"medbase rewrite: Ray Data, {args.actors} actors x AsyncOpenAI", ours_s, ours_server, None),
        ("rewrite core alone: one asyncio loop, AsyncOpenAI", core_s, core_server, core_cpu_s),
        ("Apollo: ThreadPoolExecutor(64) + sync openai client", apollo_s, apollo_server, apollo_cpu_s),
    ]  # fmt: skip
    peer_name = f"ray.data.llm HTTP processor (ray {ray_version()}), {PEER_ACTORS} actors"
    print(
        f"\n### rewrite: {n} dialogue items, {IN_FLIGHT} in flight, {LATENCY_S * 1000:.0f} ms server\n"
    )
    print(
        "| run | wall s | items/s end to end | req/s first to last | req/s steady"
        " | steady % of 320/s | peak in flight | client CPU ms/item |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    if peer_server is not None:
        table.append((peer_name, peer["wall_s"], peer_server, None))
    for name, wall, st, cpu_s in table:
        cpu = f"{1000 * cpu_s / n:.2f}" if cpu_s is not None else ""
        print(
            f"| {name} | {wall:.2f} | {n / wall:.1f} | {st['whole_per_s']:.1f} "
            f"| {st['steady_per_s']:.1f} | {100 * st['steady_per_s'] / limit:.0f}% "
            f"| {st['peak_in_flight']} | {cpu} |"
        )
    if peer_server is None:
        why = "skipped (--quick)" if peer is None else peer["error"]
        print(f"| {peer_name} | {why} | | | | | | |")
    print(f"| resumed run, all {n} done (skip only) | {resume_s:.2f} | | | | | | |")
    print(
        "\nend to end: the whole call, starting the actor pool and writing the shards"
        " included. first to last / steady: requests per second as the server saw them,"
        " over the whole run / over its middle 80% of requests; peak in flight: the most"
        f" requests the server held at once. On {os.cpu_count()} CPUs.\n\nload before:"
        f" {load_before}\nload after:  {load_after}\n"
    )
    ours, apollo = ours_server["steady_per_s"], apollo_server["steady_per_s"]
    figures = [
        ("rewrite_requests_per_s_steady_64_in_flight", ours, 0.8 * limit, True),
        ("rewrite_requests_per_s_first_to_last", ours_server["whole_per_s"], None, True),
        ("rewrite_items_per_s_end_to_end", n / ours_s, None, True),
        ("apollo_threads_requests_per_s_steady", apollo, None, True),
        ("rewrite_vs_apollo_threads_steady_ratio", ours / apollo, None, True),
        ("core_cpu_ms_per_item", 1000 * core_cpu_s / n, None, False),
        ("apollo_threads_cpu_ms_per_item", 1000 * apollo_cpu_s / n, None, False),
        ("resume_skip_s", resume_s, None, False),
    ]
    if peer_server is not None:
        peer_rps = peer_server["steady_per_s"]
        print(
            f"medbase / ray.data.llm requests/s steady: **{ours / peer_rps:.2f}x** (goal >= 1x)\n"
        )
        figures += [
            ("ray_data_llm_requests_per_s_steady", peer_rps, None, True),
            ("rewrite_vs_ray_data_llm_steady_ratio", ours / peer_rps, 1.0, True),
        ]
    print(
        json.dumps(
            [
                {"name": k, "value": round(v, 3), "goal": g, "higher_is_better": h}
                for k, v, g, h in figures
            ]
        )
    )


if __name__ == "__main__":
    main()
