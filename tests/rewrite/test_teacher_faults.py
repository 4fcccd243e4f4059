"""The teacher client against the fault-injecting server: the openai client's retries
(429 after Retry-After, 5xx, timeouts), what ends as a reject, and the in-flight / QPS
limits. Real HTTP, real AsyncOpenAI; no Ray."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from medbase_ray.rewrite.parsing import Rejected
from medbase_ray.rewrite.teacher import Teacher, TeacherSettings, Usage

pytestmark = pytest.mark.integration


def settings(base_url: str, **kw) -> TeacherSettings:
    values = {
        "base_url": base_url,
        "model": "fault-teacher",
        "api_key": SecretStr("sk-unit"),
        "max_in_flight": 8,
        "qps": None,
        "max_retries": 2,
        "timeout_s": 2.0,  # the slow fault answers after 2.5 s
        "temperature": 0.0,
        "max_tokens": 64,
    }
    return TeacherSettings(**(values | kw))


def complete_all(s: TeacherSettings, prompts: list[str]) -> tuple[list, Usage]:
    async def main():
        teacher = Teacher(s)
        usage = Usage()

        async def one(p: str):
            try:
                return await teacher.complete(p, usage)
            except Rejected as exc:
                return exc

        try:
            return await asyncio.gather(*(one(p) for p in prompts)), usage
        finally:
            await teacher.close()

    return asyncio.run(main())


def test_429_is_retried_after_retry_after(fault_teacher) -> None:
    fault_teacher.server.reset()
    prompt = "[fault:429x1] What is asthma?"
    (answer,), usage = complete_all(settings(fault_teacher.base_url), [prompt])
    assert answer == "OK"
    first, second = fault_teacher.server.attempt_times[prompt]
    assert second - first >= 0.95  # the server said Retry-After: 1
    assert usage.requests == 1 and usage.prompt_tokens == len(prompt) // 4


def test_5xx_is_retried_then_rejected_as_teacher_error(fault_teacher) -> None:
    fault_teacher.server.reset()
    results, usage = complete_all(
        settings(fault_teacher.base_url), ["[fault:500] always", "[fault:500x2] twice"]
    )
    assert isinstance(results[0], Rejected) and results[0].reason == "teacher_error"
    assert "HTTP 500" in results[0].detail
    assert results[1] == "OK"
    assert fault_teacher.server.attempts["[fault:500] always"] == 3  # 1 + max_retries
    assert fault_teacher.server.attempts["[fault:500x2] twice"] == 3
    assert usage.requests == 1


def test_a_refusing_endpoint_is_unusable_not_a_reject(fault_teacher) -> None:
    from medbase_ray.rewrite.teacher import TeacherUnusable

    for code in ("401", "404"):
        with pytest.raises(TeacherUnusable, match=f"HTTP {code}"):
            complete_all(settings(fault_teacher.base_url), [f"[fault:{code}] x"])


def test_timeouts_are_retried_then_rejected(fault_teacher) -> None:
    fault_teacher.server.reset()
    results, _ = complete_all(
        settings(fault_teacher.base_url, max_retries=1, timeout_s=1.0),
        ["[fault:slow] never in time", "[fault:slowx1] in time on the retry"],
    )
    assert isinstance(results[0], Rejected) and results[0].reason == "teacher_error"
    assert "timed out" in results[0].detail
    assert results[1] == "OK"


def test_truncated_json_no_tags_and_cut_answers_are_rejected_with_reasons(fault_teacher) -> None:
    fault_teacher.server.reset()
    results, _ = complete_all(
        settings(fault_teacher.base_url),
        ["[fault:truncated] x", "[fault:empty] x", "[fault:long] x", "[fault:notags] x"],
    )
    truncated, empty, long, notags = results
    assert truncated.reason == "unparsable" and "not a chat completion" in truncated.detail
    assert empty.reason == "unparsable"
    assert long.reason == "too_long"
    assert (
        isinstance(notags, str) and "<Patient>" not in notags
    )  # the parser's job, see test_parsing
    assert fault_teacher.server.attempts["[fault:truncated] x"] == 1


def test_in_flight_limit_holds(fault_teacher) -> None:
    fault_teacher.server.reset()
    prompts = [f"[fault:delay] q{i}" for i in range(12)]
    results, usage = complete_all(settings(fault_teacher.base_url, max_in_flight=4), prompts)
    assert results == ["OK"] * 12 and usage.requests == 12
    assert 1 < fault_teacher.server.max_in_flight <= 4


def test_qps_limit_spaces_request_starts(fault_teacher) -> None:
    fault_teacher.server.reset()
    prompts = [f"q{i}" for i in range(9)]
    start = time.monotonic()
    results, _ = complete_all(settings(fault_teacher.base_url, qps=20.0), prompts)
    assert results == ["OK"] * 9
    assert time.monotonic() - start >= 8 / 20 - 0.02
    starts = sorted(t for p in prompts for t in fault_teacher.server.attempt_times[p])
    assert starts[-1] - starts[0] >= 8 / 20 / 2  # as the server saw them (network jitter)


def test_an_unreachable_teacher_stops_the_run_before_anything_is_written(tmp_path) -> None:
    from medbase_ray.config import PipelineConfig
    from medbase_ray.rewrite.pipeline import run_rewrite
    from medbase_ray.rewrite.teacher import TeacherUnusable

    cfg = PipelineConfig.model_validate(
        {
            "run": {"root": str(tmp_path / "runs")},
            "rewrite": {"base_url": "http://127.0.0.1:18398/v1", "max_retries": 1},
        }
    )
    with pytest.raises(TeacherUnusable, match="cannot reach the teacher at http://127.0.0.1:18398"):
        run_rewrite(cfg)  # the bundled sample: 198 passages, none turned into rejects
    assert not (tmp_path / "runs").exists()
