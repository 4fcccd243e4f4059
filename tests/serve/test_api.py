"""The HTTP surface in-process (FastAPI app over the real engine, no Ray): every kind of
bad request is a 4xx with an OpenAI-style body naming the field, and the app goes on."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from medbase_ray.serve.api import create_api, sha256_hex
from medbase_ray.serve.config import ServeConfig
from medbase_ray.serve.engine import Engine, StepOutput
from medbase_ray.serve.handlers import InProcessBackend, ServedModel

GOOD = {"model": "tiny", "prompt": "User:fever?\nAssistant:", "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def served(tiny_dir):
    from medbase_ray.models.loading import load_tokenizer

    engine = Engine.load(str(tiny_dir))
    tok = load_tokenizer(str(tiny_dir))
    model = ServedModel("tiny", tok, 64, "apollo", int(time.time()), len(tok))
    return engine, model


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


BAD_REQUESTS = [
    ("not json", b"{model: tiny", 400, None),
    ("json list", b"[1, 2]", 400, None),
    ("no model", {"prompt": "x"}, 400, "model"),
    ("unknown model", GOOD | {"model": "gpt-4"}, 404, "model"),
    ("string max_tokens", GOOD | {"max_tokens": "2"}, 400, "max_tokens"),
    ("negative max_tokens", GOOD | {"max_tokens": -3}, 400, "max_tokens"),
    ("temperature out of range", GOOD | {"temperature": 9}, 400, "temperature"),
    ("top_p out of range", GOOD | {"top_p": 1.5}, 400, "top_p"),
    ("unknown field", GOOD | {"best_of_all": 2}, 400, "best_of_all"),
    ("too many logprobs", GOOD | {"logprobs": 21}, 400, "logprobs"),
    ("too many choices", GOOD | {"n": 65}, 400, "n"),
    ("token id out of vocab", GOOD | {"prompt": [10**7]}, 400, "prompt"),
    ("empty prompt", GOOD | {"prompt": ""}, 400, "prompt"),
    ("prompt over context", GOOD | {"prompt": "fever " * 200}, 400, "prompt"),
    ("prompt + max_tokens over context", GOOD | {"max_tokens": 64}, 400, "max_tokens"),
    ("lone surrogate", b'{"model": "tiny", "prompt": "\\ud800 fever"}', 400, "prompt"),
    ("seed over 64 bits", GOOD | {"seed": 2**70}, 400, "seed"),
    ("min_tokens over max_tokens", GOOD | {"min_tokens": 3}, 400, "min_tokens"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "param"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_completion_requests_are_4xx_naming_the_field(served, case, body, status, param):
    engine, model = served
    app = create_api(InProcessBackend(engine), model, ServeConfig())
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    resp = call(app, "POST", "/v1/completions", **kwargs)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["param"] == param
    assert error["message"] and error["type"] == "invalid_request_error"
    assert call(app, "POST", "/v1/completions", json=GOOD).status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"temperature": 1e-30},  # would overflow logits / temperature: sampled greedily
        {"temperature": 2.0, "top_p": 1e-30, "seed": -5},
        {"prompt": "<|endoftext|>", "echo": True, "logprobs": 3},
        {"prompt": [[1, 2], [3]], "echo": True, "logprobs": 0, "stop": ""},
    ],
)
def test_edge_values_are_served(served, extra):
    engine, model = served
    app = create_api(InProcessBackend(engine), model, ServeConfig())
    resp = call(app, "POST", "/v1/completions", json=GOOD | extra)
    assert resp.status_code == 200, resp.text
    assert all(c["finish_reason"] for c in resp.json()["choices"])


def test_bad_chat_requests_are_4xx(served):
    engine, model = served
    app = create_api(InProcessBackend(engine), model, ServeConfig())
    base = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    cases = [
        (base | {"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        (base | {"max_tokens": 0}, "max_tokens"),
        (base | {"messages": [{"role": "user", "content": "fever " * 100}]}, "messages"),
        (base | {"top_logprobs": 99, "logprobs": True}, "top_logprobs"),
    ]
    for body, param in cases:
        resp = call(app, "POST", "/v1/chat/completions", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param, resp.text
    assert call(app, "GET", "/v1/nothing-here").status_code == 404


def test_streamed_completion_is_server_sent_events(served):
    engine, model = served
    app = create_api(InProcessBackend(engine), model, ServeConfig())
    body = GOOD | {"stream": True, "max_tokens": 4, "stream_options": {"include_usage": True}}
    resp = call(app, "POST", "/v1/completions", json=body)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = [e.removeprefix("data: ") for e in resp.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    finished = [c["choices"][0]["finish_reason"] for c in chunks[:-1]]
    assert finished[-1] == "length" and set(finished[:-1]) <= {None}
    whole = call(app, "POST", "/v1/completions", json=GOOD | {"max_tokens": 4}).json()
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == whole["choices"][0]["text"]


def test_api_key_gates_every_route_but_health(served):
    engine, model = served
    app = create_api(InProcessBackend(engine), model, ServeConfig(), sha256_hex("k-123"))
    assert call(app, "POST", "/v1/completions", json=GOOD).status_code == 401
    resp = call(app, "POST", "/v1/completions", content=b"{bad json")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
    wrong = {"Authorization": "Bearer k-12"}
    assert call(app, "GET", "/v1/models", headers=wrong).status_code == 401
    right = {"Authorization": "Bearer k-123"}
    assert call(app, "POST", "/v1/completions", json=GOOD, headers=right).status_code == 200
    assert call(app, "GET", "/health").status_code == 200


def test_chat_format_template_uses_the_tokenizers_chat_template(served):
    engine, model = served
    templated = ServedModel("tiny", model.tokenizer, 256, "template", 0, model.vocab_size)
    app = create_api(InProcessBackend(engine), templated, ServeConfig())
    messages = [{"role": "user", "content": "Fièvre ?"}, {"role": "assistant", "content": "Oui."}]
    messages.append({"role": "user", "content": "Et la toux ?"})
    body = {"model": "tiny", "messages": messages, "max_tokens": 1}
    resp = call(app, "POST", "/v1/chat/completions", json=body)
    text = model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert resp.status_code == 200 and resp.json()["usage"]["prompt_tokens"] == expected


class FailingBackendDouble:
    """Test double: a backend whose decode fails mid-way (as a GPU OOM would), a fault
    the real engine cannot be made to produce on demand."""

    def __init__(self, engine: Engine) -> None:
        self.real = InProcessBackend(engine)

    async def generate(self, job):
        if job.seed == 666:
            yield StepOutput(text="partial")
            raise RuntimeError("decode failed")
        async for out in self.real.generate(job):
            yield out


def test_a_failing_decode_is_a_clean_error_and_the_app_goes_on(served):
    engine, model = served
    app = create_api(FailingBackendDouble(engine), model, ServeConfig())
    resp = call(app, "POST", "/v1/completions", json=GOOD | {"seed": 666})
    assert resp.status_code == 500 and resp.json()["error"]["type"] == "server_error"
    assert "decode failed" not in resp.text  # no internals in the reply
    resp = call(app, "POST", "/v1/completions", json=GOOD | {"seed": 666, "stream": True})
    events = [e.removeprefix("data: ") for e in resp.text.split("\n\n") if e]
    assert json.loads(events[-2])["error"]["type"] == "server_error" and events[-1] == "[DONE]"
    assert call(app, "POST", "/v1/completions", json=GOOD).status_code == 200


def test_min_tokens_holds_back_the_end_of_text(served) -> None:
    """vLLM's `min_tokens` (the eval stage's min_new_tokens through HTTP). The token the
    model picks first is made its end-of-text, so a free reply stops at once."""
    import dataclasses

    engine, model = served
    free = call(create_api(InProcessBackend(engine), model, ServeConfig()), "POST",
                "/v1/completions", json=GOOD | {"max_tokens": 1})  # fmt: skip
    first = model.tokenizer(free.json()["choices"][0]["text"])["input_ids"][0]
    ending = dataclasses.replace(engine, eos_ids=frozenset({first}))
    app = create_api(InProcessBackend(ending), model, ServeConfig())
    body = GOOD | {"max_tokens": 5}
    stopped = call(app, "POST", "/v1/completions", json=body).json()
    assert stopped["usage"]["completion_tokens"] == 1
    assert stopped["choices"][0]["finish_reason"] == "stop"
    held = call(app, "POST", "/v1/completions", json=body | {"min_tokens": 4}).json()
    assert held["usage"]["completion_tokens"] >= 4 and held["choices"][0]["text"]


def test_tokenizer_routes_are_the_served_tokenizers(served) -> None:
    """/tokenizer_info, /tokenize and /detokenize, as lm-eval's remote tokenizer reads them."""
    engine, model = served
    app = create_api(InProcessBackend(engine), model, ServeConfig())
    info = call(app, "GET", "/tokenizer_info").json()
    assert info["eos_token"] == model.tokenizer.eos_token and info["chat_format"] == "apollo"
    assert info["model_max_length"] == 64
    text = "User:Which organ secretes insulin?"
    got = call(app, "POST", "/tokenize", json={"prompt": text, "add_special_tokens": False})
    assert got.json()["tokens"] == model.tokenizer(text, add_special_tokens=False)["input_ids"]
    back = call(app, "POST", "/detokenize", json={"tokens": got.json()["tokens"]})
    assert back.json()["prompt"] == text
    bad = call(app, "POST", "/detokenize", json={"tokens": [10**7]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"
