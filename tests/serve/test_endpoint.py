"""The real Serve app on the local Ray, queried with the real `openai` client.

Run alone with a free port:  MEDBASE_TEST_SERVE_PORT=18150 pytest tests/serve -m integration
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest
import torch

from medbase_ray.models.chat import apollo_prompt

pytestmark = pytest.mark.integration

PROMPTS = [
    "User:What is the first-line treatment of type 2 diabetes?\nAssistant:",
    "Le patient présente une fièvre",
    "患者出现发热和咳嗽",
    "El",
]


def client(endpoint, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=endpoint.base_url, api_key="unused", max_retries=0, **kwargs)


def test_models_health_and_loopback(tiny_endpoint):
    from medbase_ray.serve.app import proxy_address

    assert [m.id for m in client(tiny_endpoint).models.list().data] == [tiny_endpoint.model]
    health = httpx.get(tiny_endpoint.base_url.removesuffix("/v1") + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert proxy_address("?", 0)[0] == "127.0.0.1"  # local mode listens on loopback only


def test_greedy_completion_equals_generate(tiny_endpoint, tiny_model, tiny_tokenizer):
    # One request with prompts of different lengths: they are decoded as one left-padded batch.
    resp = client(tiny_endpoint).completions.create(
        model=tiny_endpoint.model, prompt=PROMPTS, max_tokens=12, temperature=0, logprobs=1
    )
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    n_generated = 0
    for prompt, choice in zip(PROMPTS, resp.choices, strict=True):
        ids = tiny_tokenizer(prompt, return_tensors="pt")["input_ids"]
        out = tiny_model.generate(
            ids,
            max_new_tokens=12,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        ref_ids = out.sequences[0, ids.shape[1] :].tolist()
        assert choice.text == tiny_tokenizer.decode(ref_ids, skip_special_tokens=True)
        ref_lps = [
            torch.log_softmax(logits[0].float(), -1)[t].item()
            for logits, t in zip(out.logits, ref_ids, strict=True)
        ]
        assert choice.logprobs.token_logprobs == pytest.approx(ref_lps, abs=1e-4)
        n_generated += len(ref_ids)
    assert resp.usage.completion_tokens == n_generated
    assert resp.usage.prompt_tokens == sum(len(tiny_tokenizer(p)["input_ids"]) for p in PROMPTS)


def test_echoed_prompt_logprobs_equal_in_process(tiny_endpoint, tiny_model, tiny_tokenizer):
    resp = client(tiny_endpoint).completions.create(
        model=tiny_endpoint.model, prompt=PROMPTS, max_tokens=0, echo=True, logprobs=1
    )
    assert resp.usage.completion_tokens == 0
    for prompt, choice in zip(PROMPTS, resp.choices, strict=True):
        ids = tiny_tokenizer(prompt)["input_ids"]
        with torch.no_grad():
            logits = tiny_model(torch.tensor([ids])).logits[0].float()
        ref = torch.log_softmax(logits, -1)
        lp = choice.logprobs
        assert choice.text == prompt and choice.finish_reason == "length"
        assert len(lp.tokens) == len(ids) and lp.token_logprobs[0] is None
        expected = [ref[i - 1, ids[i]].item() for i in range(1, len(ids))]
        assert lp.token_logprobs[1:] == pytest.approx(expected, abs=1e-4)
        assert lp.top_logprobs[0] is None
        for i in range(1, len(ids)):  # top-1 is the most likely token, at least the actual one
            (top,) = lp.top_logprobs[i].values()
            assert top == pytest.approx(ref[i - 1].max().item(), abs=1e-4)
        assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
        assert all(
            prompt[o:].startswith(t)
            for o, t in zip(lp.text_offset, lp.tokens, strict=True)
            if "\ufffd" not in t
        )


def test_n_seed_and_stop_sequences(tiny_endpoint):
    api = client(tiny_endpoint)
    kwargs = {"model": tiny_endpoint.model, "prompt": PROMPTS[1], "max_tokens": 8}
    first = api.completions.create(n=3, temperature=1.0, seed=11, **kwargs)
    again = api.completions.create(n=3, temperature=1.0, seed=11, **kwargs)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert len({c.text for c in first.choices}) > 1  # each choice has its own seed

    full = api.completions.create(
        model=tiny_endpoint.model, prompt=PROMPTS[3], max_tokens=24, temperature=0
    ).choices[0]
    assert len(full.text) >= 8 and full.finish_reason == "length"
    stop = full.text[len(full.text) // 2 :][:3]
    cut = api.completions.create(
        model=tiny_endpoint.model,
        prompt=PROMPTS[3],
        max_tokens=24,
        temperature=0,
        stop=[stop, "@@"],
    ).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]


def test_chat_uses_the_apollo_format(tiny_endpoint, tiny_tokenizer):
    api = client(tiny_endpoint)
    messages = [
        {"role": "system", "content": "You are a careful doctor."},
        {"role": "user", "content": "What causes anemia?"},
        {"role": "assistant", "content": "Often iron deficiency."},
        {"role": "user", "content": "And in children?"},
    ]
    chat = api.chat.completions.create(
        model=tiny_endpoint.model, messages=messages, max_tokens=10, temperature=0
    )
    prompt = apollo_prompt(messages)
    assert chat.usage.prompt_tokens == len(tiny_tokenizer(prompt)["input_ids"])
    plain = api.completions.create(
        model=tiny_endpoint.model, prompt=prompt, max_tokens=10, temperature=0
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == plain.choices[0].text
    assert chat.choices[0].finish_reason == plain.choices[0].finish_reason


def test_streaming_completions_and_chat(tiny_endpoint):
    api = client(tiny_endpoint)
    model = tiny_endpoint.model
    whole = api.completions.create(model=model, prompt=PROMPTS[3], max_tokens=16, temperature=0)
    chunks = list(
        api.completions.create(
            model=model, prompt=PROMPTS[3], max_tokens=16, temperature=0, stream=True
        )
    )
    assert len(chunks) > 1
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"

    messages = [{"role": "user", "content": "Quels sont les signes de la grippe ?"}]
    reply = api.chat.completions.create(
        model=model, messages=messages, max_tokens=12, temperature=0
    )
    stream = api.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=12,
        temperature=0,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, finish, usage = {0: "", 1: ""}, {}, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert texts == {0: reply.choices[0].message.content, 1: reply.choices[0].message.content}
    assert set(finish) == {0, 1}
    assert usage.completion_tokens == 2 * reply.usage.completion_tokens


MALFORMED = [
    b'{"model": "tiny", "prompt": "x", ',  # invalid JSON
    {"model": "tiny", "prompt": "x", "max_tokens": "many"},
    {"model": "tiny"},
    {"model": "no-such-model", "prompt": "x"},
    {"model": "tiny", "prompt": "x", "temperature": -1},
    {"model": "tiny", "prompt": "fever " * 5000},  # longer than the context
    {"model": "tiny", "prompt": "x", "logprobs": 10_000},
]


def test_concurrent_requests_with_malformed_ones(tiny_endpoint):
    """64 at once, ~10% malformed: each malformed one a 4xx, each good one a 200, no 5xx."""
    rng = random.Random(0)
    bad_slots = set(rng.sample(range(64), 7))
    url = f"{tiny_endpoint.base_url}/completions"

    async def one(i: int, http: httpx.AsyncClient) -> tuple[bool, int]:
        if i in bad_slots:
            body = MALFORMED[len([s for s in bad_slots if s < i])]
            kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
            return False, (await http.post(url, **kwargs)).status_code
        prompt = PROMPTS[i % len(PROMPTS)]
        body = {"model": tiny_endpoint.model, "prompt": prompt, "max_tokens": 6, "seed": i}
        return True, (await http.post(url, json=body)).status_code

    async def run_all() -> list[tuple[bool, int]]:
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.gather(*(one(i, http) for i in range(64)))

    results = asyncio.run(run_all())
    good = [status for ok, status in results if ok]
    bad = [status for ok, status in results if not ok]
    assert len(bad) == 7 and all(400 <= s < 500 for s in bad), bad
    assert good == [200] * 57
    # The replica keeps serving.
    after = client(tiny_endpoint).completions.create(
        model=tiny_endpoint.model, prompt="ok", max_tokens=2
    )
    assert after.choices[0].finish_reason in ("length", "stop")


def _ray_logs_dir() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_logs_dir_path())


@pytest.fixture(scope="module")
def guarded(deploy_variant, tiny_dir):
    """A second app on the same proxy: the API key on (set only while it is built), and
    room for one request running and one queued. Yields (base_url, key)."""
    key = "sk-medbase-" + secrets.token_hex(16)
    assert "MEDBASE_API_KEY" not in os.environ
    limits = {"max_ongoing_requests": 1, "max_queued_requests": 1, "retry_after_s": 2}
    with ExitStack() as stack:
        os.environ["MEDBASE_API_KEY"] = key
        try:
            variant = deploy_variant(str(tiny_dir), "guarded", max_batch_size=1, **limits)
            base_url = stack.enter_context(variant)
        finally:
            del os.environ["MEDBASE_API_KEY"]
        yield base_url, key


def test_api_key_on_and_off(tiny_endpoint, guarded, capfd):
    # Off: the shared endpoint was deployed without MEDBASE_API_KEY.
    assert client(tiny_endpoint).models.list().data
    base_url, key = guarded
    no_key = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        no_key.completions.create(model="tiny", prompt="x", max_tokens=1)
    resp = httpx.post(f"{base_url}/completions", content=b"{not json")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(base_url.removesuffix("/v1") + "/health").status_code == 200
    with_key = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
    done = with_key.completions.create(model="tiny", prompt="x", max_tokens=1)
    assert done.usage.completion_tokens == 1
    # The key never reaches a log: not this process's output, not any Ray log file.
    captured = capfd.readouterr()
    assert key not in captured.out + captured.err
    log_files = [p for p in _ray_logs_dir().rglob("*") if p.is_file()]
    assert any("guarded" in p.name for p in log_files)  # the replica's own log is there
    for path in log_files:
        assert key.encode() not in path.read_bytes(), path


def test_overload_is_503_with_retry_after(guarded):
    """Past max_ongoing_requests + max_queued_requests: 503 with Retry-After, not a crash."""
    base_url, key = guarded
    headers = {"Authorization": f"Bearer {key}"}

    async def flood() -> list[httpx.Response]:
        body = {"model": "tiny", "prompt": PROMPTS[0], "max_tokens": 32, "temperature": 0}
        async with httpx.AsyncClient(timeout=120, headers=headers) as http:
            posts = [http.post(f"{base_url}/completions", json=body) for _ in range(8)]
            return await asyncio.gather(*posts)

    responses = asyncio.run(flood())
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503}, statuses
    assert all(r.headers.get("retry-after") == "2" for r in responses if r.status_code == 503)
    body = {"model": "tiny", "prompt": "ok", "max_tokens": 1}
    assert httpx.post(f"{base_url}/completions", json=body, headers=headers).status_code == 200
