"""The decode core: batched, left-padded decoding equals `generate`, stop strings, seeds."""

from __future__ import annotations

import pytest
import torch

from medbase_ray.serve.engine import Engine, SequenceJob, StopTextTracker

PROMPTS = [
    "User:What is the first-line treatment of type 2 diabetes?\nAssistant:",
    "Le patient présente une fièvre",
    "患者出现发热和咳嗽",
    "El",
]


@pytest.fixture(scope="module")
def inline_tokenizer():
    """A byte-level BPE tokenizer trained on a few inline lines (no bundled data needed)."""
    from medbase_ray.models.tiny import train_tokenizer

    texts = ["the patient has a fever and a cough", "la fièvre du patient", "患者发热"] * 20
    return train_tokenizer(texts)


def _feed(tracker: StopTextTracker, ids: list[int]) -> tuple[str, bool]:
    out, stopped = "", False
    for token_id in ids:
        delta, stopped = tracker.push(token_id)
        out += delta
        if stopped:
            break
    return out, stopped


def test_stop_string_across_tokens_is_cut_and_never_streamed(inline_tokenizer):
    text = "the patient has a fever and a cough"
    ids = inline_tokenizer(text)["input_ids"]
    out, stopped = _feed(StopTextTracker(inline_tokenizer, ["fever and"]), ids)
    assert stopped and out == "the patient has a "
    out, stopped = _feed(StopTextTracker(inline_tokenizer, ["nowhere"]), ids)
    assert not stopped  # the held-back tail comes out with flush()
    tracker = StopTextTracker(inline_tokenizer, ["nowhere"])
    assert _feed(tracker, ids)[0] + tracker.flush() == text


def test_partial_utf8_characters_are_held_back(inline_tokenizer):
    ids = inline_tokenizer.encode("患者发热")
    tracker = StopTextTracker(inline_tokenizer, [])
    deltas = [tracker.push(i)[0] for i in ids] + [tracker.flush()]
    assert "".join(deltas) == "患者发热"
    assert all("\ufffd" not in d for d in deltas)


@pytest.fixture(scope="module")
def engine(tiny_dir) -> Engine:
    return Engine.load(str(tiny_dir))


def _run(engine: Engine, jobs: list[SequenceJob]):
    """Decode a batch; per job: (token ids, text, finish reason, first output)."""
    results = [([], "", None, None) for _ in jobs]
    for outputs in engine.decode(jobs):
        for i, out in enumerate(outputs):
            if out is None:
                continue
            ids, text, _, first = results[i]
            results[i] = (ids + out.token_ids, text + out.text, out.finish_reason, first or out)
    return results


def test_batched_greedy_equals_generate_one_by_one(engine):
    tok = engine.tokenizer
    jobs = [
        SequenceJob(tuple(tok(p)["input_ids"]), max_tokens=m, temperature=0)
        for p, m in zip(PROMPTS, (12, 5, 9, 12), strict=True)
    ]
    results = _run(engine, jobs)
    for job, (ids, text, finish, _) in zip(jobs, results, strict=True):
        ref = engine.model.generate(
            torch.tensor([job.prompt_ids]), max_new_tokens=job.max_tokens, do_sample=False
        )[0, len(job.prompt_ids) :].tolist()
        assert ids == ref
        assert text == tok.decode(ref, skip_special_tokens=True)
        assert finish == ("length" if len(ids) == job.max_tokens else "stop")


def test_prompt_logprobs_and_max_tokens_zero(engine):
    tok = engine.tokenizer
    ids = tuple(tok(PROMPTS[1])["input_ids"])
    jobs = [
        SequenceJob(ids, max_tokens=0, prompt_logprobs=2),
        SequenceJob(tuple(tok(PROMPTS[0])["input_ids"]), max_tokens=3, temperature=0),
    ]
    (gen_ids, text, finish, first), (other_ids, *_) = _run(engine, jobs)
    assert (gen_ids, text, finish) == ([], "", "length") and len(other_ids) == 3
    with torch.no_grad():
        ref = torch.log_softmax(engine.model(torch.tensor([ids])).logits[0].float(), -1)
    scored = first.prompt_logprobs
    assert [s.token_id for s in scored] == list(ids)
    assert scored[0].logprob is None
    for pos in range(1, len(ids)):
        assert scored[pos].logprob == pytest.approx(ref[pos - 1, ids[pos]].item(), abs=1e-4)
        assert len(scored[pos].top) == 2
        assert scored[pos].top[0][1] == pytest.approx(ref[pos - 1].max().item(), abs=1e-4)


def test_sampling_is_reproducible_by_seed(engine):
    ids = tuple(engine.tokenizer(PROMPTS[2])["input_ids"])

    def sample(seed: int) -> list[int]:
        job = SequenceJob(ids, max_tokens=8, temperature=1.5, top_p=0.95, seed=seed)
        return _run(engine, [job])[0][0]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    # A seeded row samples the same whatever else shares its batch.
    alone = _run(engine, [SequenceJob(ids, max_tokens=8, temperature=1.0, seed=5)])[0][0]
    batch = [
        SequenceJob(tuple(engine.tokenizer(PROMPTS[0])["input_ids"]), 8, temperature=1.0),
        SequenceJob(ids, max_tokens=8, temperature=1.0, seed=5),
    ]
    assert _run(engine, batch)[1][0] == alone
