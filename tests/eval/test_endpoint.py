"""Eval through a real Ray Serve endpoint (the `tiny_endpoint` fixture) with the openai client.

Run with MEDBASE_TEST_SERVE_PORT set to a free port (the fixture's Serve HTTP port).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from medbase_ray.config import load_config
from medbase_ray.eval.lm import EndpointLM, InProcessLM
from medbase_ray.eval.prompts import build_prompt, render_apollo
from medbase_ray.eval.runner import load_benchmark, run_eval

pytestmark = pytest.mark.integration


def config(bench_dir: Path, model_path: str, *overrides: str):
    return load_config(
        preset="tiny",
        overrides=[
            f"eval.benchmark={bench_dir}",
            f"model.name_or_path={model_path}",
            "eval.bootstrap_samples=100",
            "eval.cpu_threads=1",  # a shared 2-core machine: see EvalConfig.cpu_threads
            *overrides,
        ],
    )


def test_endpoint_scores_equal_in_process(bench_dir: Path, tiny_endpoint) -> None:
    """loglikelihood and cloze log-probs: one echo request per item == the in-process forward."""
    cfg = config(bench_dir, tiny_endpoint.model_path, "eval.k_shot=1")
    items, dev, _, _ = load_benchmark(cfg.eval)
    local = InProcessLM.load(tiny_endpoint.model_path, cpu_threads=1)

    async def compare() -> int:
        remote = EndpointLM(tiny_endpoint.base_url, tiny_endpoint.model)
        compared = 0
        try:
            for mode in ("loglikelihood", "cloze"):
                for item in items[1::2]:  # 5 options (en), zh, fr, hi
                    p = build_prompt(
                        item, dev, mode=mode, k_shot=1, max_prompt_tokens=1536, seed=0,
                        render=render_apollo, count_tokens=len,
                    )  # fmt: skip
                    conts = list(p.continuations.values())
                    want = await local.continuation_logprobs(p.context, conts)
                    got = await remote.continuation_logprobs(p.context, conts)
                    assert got == pytest.approx(want, abs=1e-4), (mode, item["id"])
                    compared += len(conts)
        finally:
            await remote.aclose()
        return compared

    assert asyncio.run(compare()) == 2 * (5 + 4 + 4 + 4)


def test_eval_of_a_checkpoint_through_serve(bench_dir: Path, tiny_endpoint, tmp_path: Path) -> None:
    """End to end: `run_eval` against the endpoint gives the in-process results."""
    cfg = config(bench_dir, tiny_endpoint.model_path, "eval.mode=loglikelihood", "eval.k_shot=2")
    via_http = run_eval(cfg, base_url=tiny_endpoint.base_url, out_dir=str(tmp_path / "http"))
    in_process = run_eval(cfg, out_dir=str(tmp_path / "local"))
    # The model name came from the endpoint's GET /v1/models.
    assert via_http["run"]["model"] == f"{tiny_endpoint.base_url} {tiny_endpoint.model}"
    assert via_http["run"]["endpoint"] == tiny_endpoint.base_url

    def rows(name: str) -> dict[str, dict]:
        lines = (tmp_path / name / "results.jsonl").read_text().splitlines()
        return {r["id"]: r for r in map(json.loads, lines)}

    http_rows, local_rows = rows("http"), rows("local")
    assert http_rows.keys() == local_rows.keys() and len(http_rows) == 8
    for key, row in http_rows.items():
        assert row["scores"] == pytest.approx(local_rows[key]["scores"], abs=1e-4)
        assert row["prediction"] == local_rows[key]["prediction"]
    assert via_http["accuracy"]["sources"] == in_process["accuracy"]["sources"]


def test_generate_through_serve_equals_in_process(
    bench_dir: Path, tiny_endpoint, tmp_path: Path
) -> None:
    cfg = config(
        bench_dir, tiny_endpoint.model_path,
        "eval.mode=generate", "eval.k_shot=0", "eval.max_new_tokens=8", "eval.min_new_tokens=4",
    )  # fmt: skip
    run_eval(cfg, base_url=tiny_endpoint.base_url, out_dir=str(tmp_path / "http"))
    run_eval(cfg, out_dir=str(tmp_path / "local"))
    read = lambda name: [  # noqa: E731
        json.loads(x) for x in (tmp_path / name / "results.jsonl").read_text().splitlines()
    ]
    http = {r["id"]: r["response"] for r in read("http")}
    local = {r["id"]: r["response"] for r in read("local")}
    assert http == local
    # Not two empty texts: each is the text of at least min_new_tokens generated tokens,
    # counted by the server (usage), for the prompt the runner sent.
    items, dev, _, _ = load_benchmark(cfg.eval)
    for item in items:
        assert http[item["id"]].strip(), item["id"]
        p = build_prompt(
            item, dev, mode="generate", k_shot=0, max_prompt_tokens=1536, seed=0,
            render=render_apollo, count_tokens=len,
        )  # fmt: skip
        body = {
            "model": tiny_endpoint.model, "prompt": p.context, "max_tokens": 8,
            "min_tokens": 4, "temperature": 0,
        }  # fmt: skip
        reply = httpx.post(f"{tiny_endpoint.base_url}/completions", json=body, timeout=120)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["text"] == http[item["id"]]
        assert reply.json()["usage"]["completion_tokens"] >= 4


class FailFirstRequests(httpx.AsyncBaseTransport):
    """Test double for fault injection: answers the first `n` requests with a 503, as an
    overloaded server would (which the real one cannot be made to do on cue), then
    passes every request to the real endpoint."""

    def __init__(self, n: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.left = n
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.left > 0:
            self.left -= 1
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "busy"})
        return await self.inner.handle_async_request(request)


def test_failed_requests_are_retried_by_the_client(bench_dir: Path, tiny_endpoint) -> None:
    async def score() -> tuple[list[float], int]:
        transport = FailFirstRequests(2)
        lm = EndpointLM(
            tiny_endpoint.base_url,
            tiny_endpoint.model,
            max_retries=3,
            http_client=httpx.AsyncClient(transport=transport),
        )
        try:
            got = await lm.continuation_logprobs("User:What secretes insulin?\nAssistant:", ["x"])
        finally:
            await lm.aclose()
        return got, transport.requests

    got, requests = asyncio.run(score())
    assert requests == 3 and len(got) == 1 and got[0] < 0
