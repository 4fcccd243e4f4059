"""The teacher: an OpenAI-compatible chat endpoint behind `openai.AsyncOpenAI`.

One `Teacher` per event loop. It bounds the requests in flight (a semaphore) and,
optionally, the rate at which they start; retries (429 after Retry-After, 5xx,
timeouts, connection errors) are the openai client's own, set by `max_retries` and
`timeout`. A request that still fails raises `Rejected("teacher_error")`; an answer that
cannot be read raises `Rejected("unparsable")`; one cut at max_tokens `Rejected("too_long")`.
401 / 403 / 404 say the endpoint itself is wrong: `TeacherUnusable` stops the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import openai
from pydantic import SecretStr

from medbase_ray.rewrite.parsing import Rejected

log = logging.getLogger(__name__)

# Sent when the configured variable is unset: local endpoints need no key, and the
# openai client refuses to start without one.
NO_KEY = "EMPTY"


class TeacherUnusable(RuntimeError):
    """The endpoint refuses every request (bad key, unknown model or URL): the run stops
    instead of rejecting every item; what is written stays, a re-run resumes."""


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass
class TeacherSettings:
    """What a worker needs to build its client (picklable; the key stays a SecretStr)."""

    base_url: str
    model: str
    api_key: SecretStr
    max_in_flight: int
    qps: float | None
    max_retries: int
    timeout_s: float
    temperature: float
    max_tokens: int


class RateLimiter:
    """Start at most `qps` requests per second: each caller waits for its own slot."""

    def __init__(self, qps: float | None) -> None:
        self.interval_s = 1.0 / qps if qps else 0.0
        self._next_s = 0.0

    async def wait(self) -> None:
        if not self.interval_s:
            return
        now = time.monotonic()
        slot = max(now, self._next_s)
        self._next_s = slot + self.interval_s
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class Teacher:
    settings: TeacherSettings
    in_flight: int = 0
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        s = self.settings
        self.client = openai.AsyncOpenAI(
            base_url=s.base_url,
            api_key=s.api_key.get_secret_value(),
            max_retries=s.max_retries,
            timeout=s.timeout_s,
            # The openai client's aiohttp transport: ~2.2 ms CPU per request here
            # against ~3.9 ms for its default httpx one (benchmarks/rewrite.py), which
            # decides how many requests one actor's event loop keeps in flight.
            http_client=openai.DefaultAioHttpClient(timeout=s.timeout_s),
        )
        self._slots = asyncio.Semaphore(s.max_in_flight)
        self._limiter = RateLimiter(s.qps)

    async def complete(self, prompt: str, usage: Usage) -> str:
        """The teacher's answer to one user message; adds its token usage to `usage`."""
        s = self.settings
        async with self._slots:
            await self._limiter.wait()
            self.in_flight += 1
            try:
                response = await self.client.chat.completions.create(
                    model=s.model,
                    messages=[{"role": "user", "content": prompt}],
                    temperature=s.temperature,
                    max_tokens=s.max_tokens,
                )
            except (
                openai.AuthenticationError,
                openai.PermissionDeniedError,
                openai.NotFoundError,
            ) as exc:
                raise TeacherUnusable(
                    f"the teacher at {s.base_url} refused model {s.model!r} with HTTP "
                    f"{exc.status_code}: {exc.message} (check rewrite.base_url, rewrite.model "
                    "and the API key variable rewrite.api_key_env)"
                ) from None
            except openai.APIStatusError as exc:
                code = exc.status_code
                if code == 400 and "context length" in str(exc.message):
                    raise Rejected("too_long", f"HTTP 400: {exc.message}") from None
                retried = code in (408, 409, 429) or code >= 500  # what the client retries
                after = f" after {s.max_retries} retries" if retried else ""
                raise Rejected("teacher_error", f"HTTP {code}{after}: {exc.message}") from None
            except openai.APITimeoutError:
                raise Rejected(
                    "teacher_error", f"timed out ({s.timeout_s}s) after {s.max_retries} retries"
                ) from None
            except openai.APIConnectionError as exc:
                raise Rejected(
                    "teacher_error", f"connection failed after {s.max_retries} retries: {exc}"
                ) from None
            except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                # A 200 whose body is not the JSON of a chat completion (e.g. cut short).
                raise Rejected("unparsable", f"response is not a chat completion: {exc}") from None
            finally:
                self.in_flight -= 1
        step = Usage(requests=1)
        if response.usage is not None:
            step.prompt_tokens = response.usage.prompt_tokens or 0
            step.completion_tokens = response.usage.completion_tokens or 0
        usage.add(step)
        self.usage.add(step)
        if not response.choices:
            raise Rejected("unparsable", "response has no choices")
        choice = response.choices[0]
        text = choice.message.content if choice.message else None
        if choice.finish_reason == "length":
            raise Rejected("too_long", f"answer cut at max_tokens={s.max_tokens}", text or "")
        if not text or not text.strip():
            raise Rejected("unparsable", "empty answer")
        return text

    async def close(self) -> None:
        await self.client.close()


def check_teacher(s: TeacherSettings) -> None:
    """Before any item: can the endpoint be reached, and does it take the key?

    One GET /models (no tokens spent). Without it, a wrong URL or a stopped server
    would turn every item into a `teacher_error` reject. An endpoint without /models
    passes; a model it does not list is only warned about (gateways alias names).
    """
    client = openai.OpenAI(
        base_url=s.base_url,
        api_key=s.api_key.get_secret_value(),
        max_retries=min(s.max_retries, 2),
        timeout=min(s.timeout_s, 10.0),
    )
    try:
        listed = [m.id for m in client.models.list()]
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise TeacherUnusable(f"cannot reach the teacher at {s.base_url}: {exc}") from None
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise TeacherUnusable(
            f"the teacher at {s.base_url} refused the API key with HTTP {exc.status_code} "
            "(check the variable rewrite.api_key_env names)"
        ) from None
    except openai.APIStatusError:
        return  # reachable; no /models route
    finally:
        client.close()
    if listed and s.model not in listed:
        log.warning("model %r is not among those %s lists: %s", s.model, s.base_url, listed[:10])
