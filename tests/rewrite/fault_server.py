"""A FAULT-INJECTING test double of an OpenAI-compatible teacher (aiohttp, 127.0.0.1).

It injects what a real endpoint produces only now and then. A prompt that contains
`[fault:KIND]` gets that fault on every attempt, `[fault:KINDxN]` on its first N
attempts only (attempts are counted per distinct prompt):

    429        status 429 with `Retry-After: 1`
    500        status 500
    401, 404   status 401 (bad key) / 404 (unknown model)
    slow       answers after `slow_s` (past the client's timeout)
    delay      answers after `delay_s` (a slow but healthy teacher)
    truncated  status 200, the JSON body cut in half
    notags     an answer without the expected tags
    empty      an empty answer
    garble     Latin gibberish
    drift      translate prompts: every turn replaced by Latin gibberish, tags kept
               (a translation that passes the checks but fails the round trip)
    wronglang  an answer in Chinese
    long       finish_reason "length" (cut at max_tokens)

Any other prompt gets an "echo teacher" answer made from the prompt itself, in the
prompt's language: a question from the passage, the passage as the answer, a
Patient/Doctor pair, or the conversation unchanged as its "translation".
Usage is `len(text) // 4` tokens each way; GET /stats returns what it served.

    python tests/rewrite/fault_server.py --port 18321 [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
from collections import Counter, defaultdict

from aiohttp import web

_FAULT = re.compile(r"\[fault:([a-z0-9]+?)(?:x(\d+))?\]")
_CONVERSATION = re.compile(r"(?ms)^<User>.*\Z")
_TURN = re.compile(r"<(User|Assistant)>.*?</\1>", re.DOTALL)


def echo_answer(prompt: str) -> str:
    """What a perfect (if lazy) teacher would answer to the shipped prompts."""
    if m := _CONVERSATION.search(prompt):  # translate: the conversation, unchanged
        return m.group(0).strip()
    if "<Patient>" in prompt:  # dialogue
        passage = prompt.split("<text>", 1)[1].split("</text>", 1)[0].strip()
        return (
            f"<Patient>{passage[: max(8, len(passage) // 3)]}</Patient>\n<Doctor>{passage}</Doctor>"
        )
    if "<reference text>:" in prompt:  # qa answer
        return prompt.split("<reference text>:", 1)[1].rsplit("<reply>:", 1)[0].strip()
    if "<question>:" in prompt:  # qa question
        passage = prompt.split("<text>:", 1)[1].rsplit("<question>:", 1)[0].strip()
        return passage[:60] + "?"
    return "OK"


def completion(text: str, prompt: str, finish_reason: str = "stop") -> dict:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fault-teacher",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": len(prompt) // 4,
            "completion_tokens": len(text) // 4,
            "total_tokens": len(prompt) // 4 + len(text) // 4,
        },
    }


class FaultServer:
    def __init__(self, latency_s: float = 0.0, slow_s: float = 3.0, delay_s: float = 0.2) -> None:
        self.latency_s, self.slow_s, self.delay_s = latency_s, slow_s, delay_s
        self.reset()

    def reset(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.attempt_times: dict[str, list[float]] = defaultdict(list)
        self.statuses: Counter[int] = Counter()
        self.usage = Counter()
        self.auth_headers: set[str] = set()
        self.in_flight = self.max_in_flight = 0

    def stats(self) -> dict:
        return {
            "requests": sum(self.statuses.values()),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "usage": dict(self.usage),
            "max_in_flight": self.max_in_flight,
        }

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._chat(request)
        finally:
            self.in_flight -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.auth_headers.add(request.headers.get("Authorization", ""))
        prompt = body["messages"][-1]["content"]
        self.attempts[prompt] += 1
        self.attempt_times[prompt].append(time.monotonic())
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        kind = None
        if m := _FAULT.search(prompt):
            limit = int(m.group(2)) if m.group(2) else None
            if limit is None or self.attempts[prompt] <= limit:
                kind = m.group(1)
        status, payload, text = 200, None, echo_answer(prompt)
        if kind == "429":
            status, payload = 429, {"error": {"message": "rate limited", "type": "rate_limit"}}
        elif kind == "500":
            status, payload = 500, {"error": {"message": "boom", "type": "server_error"}}
        elif kind in ("401", "404"):
            status = int(kind)
            payload = {"error": {"message": f"refused with {kind}", "type": "invalid_request"}}
        elif kind == "slow":
            await asyncio.sleep(self.slow_s)
        elif kind == "delay":
            await asyncio.sleep(self.delay_s)
        elif kind == "notags":
            text = "I am sorry, I cannot write that in the requested format."
        elif kind == "empty":
            text = ""
        elif kind == "garble":
            text = "zq xv wk jj pf qq zz kx vv"
        elif kind == "wronglang":
            text = "这是用错误的语言写的回答"
        elif kind == "drift" and _CONVERSATION.search(prompt):
            text = _TURN.sub(lambda m: f"<{m[1]}>zq xv wk jj pf qq</{m[1]}>", text)
        self.statuses[status] += 1
        if status != 200:
            headers = {"Retry-After": "1"} if status == 429 else {}
            return web.json_response(payload, status=status, headers=headers)
        doc = completion(text, prompt, "length" if kind == "long" else "stop")
        if kind not in ("slow", "truncated"):  # usage the client can actually read
            self.usage.update(
                {k: doc["usage"][k] for k in ("prompt_tokens", "completion_tokens")}
                | {"requests": 1}
            )
        raw = json.dumps(doc, ensure_ascii=False)
        if kind == "truncated":
            raw = raw[: len(raw) // 2]
        return web.Response(text=raw, content_type="application/json")

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/stats", self.get_stats)
        return app


class ServerThread:
    """The server on its own event loop in a background thread (for pytest fixtures)."""

    def __init__(self, server: FaultServer, port: int) -> None:
        self.server, self.port = server, port
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.server.app(), access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"fault server did not start on port {self.port}")
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--slow-s", type=float, default=3.0)
    args = parser.parse_args()
    server = FaultServer(args.latency_ms / 1000, args.slow_s)
    web.run_app(server.app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
