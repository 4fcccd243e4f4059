"""Request handlers of the OpenAI API: validated requests -> `SequenceJob`s -> replies.

No Ray here. A backend turns one job into a stream of `StepOutput`s: the Serve replica
(`app.py`, through `@serve.batch`) or `InProcessBackend` (one job at a time, in a thread).
A request becomes prompts x n jobs, decoded concurrently; their outputs are merged
into one reply, or into server-sent events when `stream` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fastapi.responses import JSONResponse, StreamingResponse

from medbase_ray.models.chat import apollo_prompt
from medbase_ray.models.checkpoint_info import ModelSettings
from medbase_ray.serve.config import ServeConfig
from medbase_ray.serve.engine import Engine, SequenceJob, StepOutput
from medbase_ray.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    error_body,
)
from medbase_ray.serve.responses import (
    ChoiceState,
    chat_logprobs,
    completion_logprobs,
    prompt_offsets,
    usage,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class Backend(Protocol):
    def generate(self, job: SequenceJob) -> AsyncIterator[StepOutput]: ...


class InProcessBackend:
    """Decodes each job on its own in a worker thread: no batching, no Ray."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def generate(self, job: SequenceJob) -> AsyncIterator[StepOutput]:
        steps = self.engine.decode([job])
        while (outputs := await asyncio.to_thread(next, steps, None)) is not None:
            if outputs[0] is None:
                return
            yield outputs[0]


@dataclass(frozen=True)
class ServedModel:
    model_id: str
    tokenizer: PreTrainedTokenizerBase
    context_tokens: int
    chat_format: str  # "apollo" or "template"
    created: int
    vocab_size: int  # token ids a prompt may hold (the model's embedding rows)
    settings: ModelSettings | None = None  # what the checkpoint said (None: unknown)


async def merge_streams(
    streams: Sequence[AsyncIterator[StepOutput]],
) -> AsyncIterator[tuple[int, StepOutput]]:
    """Interleave the outputs of several sequences as they come: (sequence index, output)."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[StepOutput]) -> None:
        try:
            async for output in stream:
                await queue.put((index, output))
        except Exception as exc:  # surfaced to the request below
            await queue.put((index, exc))
        await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()


def sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


class OpenAIRequestHandler:
    """The OpenAI API's request handling, without HTTP or Ray: validated requests into
    jobs for the backend, the jobs' outputs into replies."""

    def __init__(self, backend: Backend, served: ServedModel, cfg: ServeConfig) -> None:
        self.backend, self.served, self.cfg = backend, served, cfg
        self.tokenizer = served.tokenizer

    # --- requests -> jobs -------------------------------------------------------------

    def check_model(self, model: str) -> None:
        if model != self.served.model_id:
            raise APIError(
                404,
                f"The model {model!r} does not exist; this server serves {self.served.model_id!r}.",
                param="model",
                code="model_not_found",
            )

    def check_choices(self, n_prompts: int, n: int, best_of: int | None = None) -> None:
        if best_of is not None and best_of != n:
            raise APIError(400, "best_of must equal n on this server.", param="best_of")
        if n_prompts * n > self.cfg.max_choices_per_request:
            raise APIError(
                400,
                f"prompts x n = {n_prompts * n} exceeds this server's limit of "
                f"{self.cfg.max_choices_per_request} sequences per request.",
                param="n",
            )

    def check_logprobs(self, k: int | None, param: str) -> None:
        if k is not None and k > self.cfg.max_logprobs:
            raise APIError(
                400, f"{param} must be at most {self.cfg.max_logprobs}, got {k}.", param=param
            )

    def check_length(self, n_prompt: int, max_tokens: int, param: str, min_tokens: int = 0) -> None:
        if min_tokens > max_tokens:
            raise APIError(
                400,
                f"min_tokens ({min_tokens}) must not exceed max_tokens ({max_tokens}).",
                param="min_tokens",
            )
        context = self.served.context_tokens
        if n_prompt == 0:
            raise APIError(400, "The prompt must not be empty.", param=param)
        if n_prompt > context:
            raise APIError(
                400,
                f"This model's maximum context length is {context} tokens, but the prompt "
                f"has {n_prompt} tokens.",
                param=param,
                code="context_length_exceeded",
            )
        if n_prompt + max_tokens > context:
            raise APIError(
                400,
                f"This model's maximum context length is {context} tokens; you requested "
                f"{n_prompt + max_tokens} ({n_prompt} in the prompt, {max_tokens} for the "
                "completion).",
                param="max_tokens",
                code="context_length_exceeded",
            )

    def encode_prompts(self, prompt: Any) -> list[tuple[str, list[int], bool]]:
        """-> [(text, token ids, given as text)] for each prompt of the request."""
        if isinstance(prompt, str) or isinstance(prompt[0], int):
            prompt = [prompt]
        encoded = []
        for item in prompt:
            if isinstance(item, str):
                encoded.append((item, self.tokenizer(item)["input_ids"], True))
                continue
            if any(not 0 <= t < self.served.vocab_size for t in item):
                raise APIError(
                    400,
                    f"prompt token ids must be in [0, {self.served.vocab_size}).",
                    param="prompt",
                )
            encoded.append((self.tokenizer.decode(item), list(item), False))
        return encoded

    @staticmethod
    def sampling(req: CompletionRequest | ChatCompletionRequest) -> dict[str, Any]:
        temperature = 1.0 if req.temperature is None else req.temperature
        return {
            "temperature": temperature,
            "top_p": 1.0 if req.top_p is None else req.top_p,
            "stop": req.stop_strings(),
            "min_tokens": req.min_tokens,
        }

    # --- completions ------------------------------------------------------------------

    async def completions(self, req: CompletionRequest) -> JSONResponse | StreamingResponse:
        self.check_model(req.model)
        n = req.n or 1
        max_tokens = COMPLETIONS_DEFAULT_MAX_TOKENS if req.max_tokens is None else req.max_tokens
        self.check_logprobs(req.logprobs, "logprobs")
        prompts = self.encode_prompts(req.prompt)
        self.check_choices(len(prompts), n, req.best_of)
        for _, ids, _ in prompts:
            self.check_length(len(ids), max_tokens, "prompt", req.min_tokens)
        score_prompt = req.echo and req.logprobs is not None
        states, jobs = [], []
        for text, ids, as_text in prompts:
            offsets = prompt_offsets(self.tokenizer, text, ids, as_text) if score_prompt else []
            for j in range(n):
                jobs.append(
                    SequenceJob(
                        tuple(ids),
                        max_tokens,
                        seed=None if req.seed is None else req.seed + j,
                        logprobs=req.logprobs,
                        prompt_logprobs=req.logprobs if score_prompt else None,
                        **self.sampling(req),
                    )
                )
                states.append(
                    ChoiceState(len(states), text if req.echo else "", offsets, self.tokenizer)
                )
        meta = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time())}
        meta |= {"model": self.served.model_id}
        n_prompt_tokens = sum(len(ids) for _, ids, _ in prompts)
        streams = merge_streams([self.backend.generate(job) for job in jobs])
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return self.stream(
                self.completion_chunks(streams, states, meta, req.logprobs is not None),
                states,
                meta | {"object": "text_completion"},
                n_prompt_tokens if include_usage else None,
            )
        async for index, output in streams:
            states[index].add(output)
        choices = [
            {
                "index": s.index,
                "text": s.text,
                "logprobs": completion_logprobs(self.tokenizer, s.logprobs)
                if req.logprobs is not None
                else None,
                "finish_reason": s.finish_reason,
            }
            for s in states
        ]
        return JSONResponse(
            meta
            | {"object": "text_completion", "choices": choices}
            | {"usage": usage(n_prompt_tokens, states)}
        )

    async def completion_chunks(
        self, streams: AsyncIterator, states: list[ChoiceState], meta: dict, with_logprobs: bool
    ) -> AsyncIterator[dict]:
        async for index, output in streams:
            state = states[index]
            echoed = state.text if not state.started else ""
            new = state.add(output)
            if not (echoed or output.text or new or output.finish_reason):
                continue  # text held back (a possible stop string): nothing to send yet
            logprobs = None
            if with_logprobs:
                logprobs = completion_logprobs(self.tokenizer, new)
            yield meta | {
                "object": "text_completion",
                "choices": [
                    {
                        "index": index,
                        "text": echoed + output.text,
                        "logprobs": logprobs,
                        "finish_reason": output.finish_reason,
                    }
                ],
            }

    # --- chat -------------------------------------------------------------------------

    def render_chat(self, req: ChatCompletionRequest) -> list[int]:
        messages = req.plain_messages()
        if self.served.chat_format == "apollo":
            text = apollo_prompt(messages, eos=self.tokenizer.eos_token or "")
            return self.tokenizer(text)["input_ids"]
        if not self.tokenizer.chat_template:
            raise APIError(400, "This model has no chat template.", param="messages")
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # a template that rejects these messages (e.g. roles)
            msg = f"The chat template rejects these messages: {exc}"
            raise APIError(400, msg, "messages") from None
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    async def chat(self, req: ChatCompletionRequest) -> JSONResponse | StreamingResponse:
        self.check_model(req.model)
        n = req.n or 1
        self.check_choices(1, n)
        top_k = (req.top_logprobs or 0) if req.logprobs else None
        self.check_logprobs(req.top_logprobs, "top_logprobs")
        ids = self.render_chat(req)
        max_tokens = req.max_completion_tokens or req.max_tokens
        room = self.served.context_tokens - len(ids)
        if max_tokens is None:
            max_tokens = max(1, min(self.cfg.chat_max_tokens_default, room))
        self.check_length(len(ids), max_tokens, "messages", req.min_tokens)
        jobs = [
            SequenceJob(
                tuple(ids),
                max_tokens,
                seed=None if req.seed is None else req.seed + j,
                logprobs=top_k,
                **self.sampling(req),
            )
            for j in range(n)
        ]
        states = [ChoiceState(j, "", [], self.tokenizer) for j in range(n)]
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time())}
        meta |= {"model": self.served.model_id}
        streams = merge_streams([self.backend.generate(job) for job in jobs])
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return self.stream(
                self.chat_chunks(streams, states, meta, top_k is not None),
                states,
                meta | {"object": "chat.completion.chunk"},
                len(ids) if include_usage else None,
            )
        async for index, output in streams:
            states[index].add(output)
        choices = [
            {
                "index": s.index,
                "message": {"role": "assistant", "content": s.text},
                "logprobs": chat_logprobs(self.tokenizer, s.logprobs)
                if top_k is not None
                else None,
                "finish_reason": s.finish_reason,
            }
            for s in states
        ]
        return JSONResponse(
            meta
            | {"object": "chat.completion", "choices": choices, "usage": usage(len(ids), states)}
        )

    async def chat_chunks(
        self, streams: AsyncIterator, states: list[ChoiceState], meta: dict, with_logprobs: bool
    ) -> AsyncIterator[dict]:
        chunk = meta | {"object": "chat.completion.chunk"}
        for state in states:  # OpenAI opens every choice with the role
            delta = {"role": "assistant", "content": ""}
            choice = {"index": state.index, "delta": delta, "logprobs": None, "finish_reason": None}
            yield chunk | {"choices": [choice]}
        async for index, output in streams:
            new = states[index].add(output)
            if not (output.text or new or output.finish_reason):
                continue
            logprobs = chat_logprobs(self.tokenizer, new) if with_logprobs else None
            delta = {"content": output.text} if output.text else {}
            choice = {"index": index, "delta": delta, "logprobs": logprobs}
            yield chunk | {"choices": [choice | {"finish_reason": output.finish_reason}]}

    # --- the tokenizer (for clients that count tokens as the server does) ---------------

    def tokenizer_info(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {
            "tokenizer_class": type(tok).__name__,
            "eos_token": tok.eos_token,
            "bos_token": tok.bos_token,
            "pad_token": tok.pad_token,
            "chat_template": tok.chat_template if self.served.chat_format == "template" else None,
            "chat_format": self.served.chat_format,
            "model_max_length": self.served.context_tokens,
        }

    def tokenize(self, req: TokenizeRequest) -> dict[str, Any]:
        if req.model is not None:
            self.check_model(req.model)
        ids = self.tokenizer(req.prompt, add_special_tokens=req.add_special_tokens)["input_ids"]
        return {"tokens": ids, "count": len(ids), "max_model_len": self.served.context_tokens}

    def detokenize(self, req: DetokenizeRequest) -> dict[str, Any]:
        if req.model is not None:
            self.check_model(req.model)
        if any(t >= self.served.vocab_size for t in req.tokens):
            raise APIError(
                400, f"token ids must be in [0, {self.served.vocab_size}).", param="tokens"
            )
        return {"prompt": self.tokenizer.decode(req.tokens)}

    # --- streaming --------------------------------------------------------------------

    def stream(
        self,
        chunks: AsyncIterator[dict],
        states: list[ChoiceState],
        meta: dict,
        n_prompt_tokens: int | None,
    ) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            try:
                async for chunk in chunks:
                    yield sse(chunk)
                if n_prompt_tokens is not None:
                    yield sse(meta | {"choices": [], "usage": usage(n_prompt_tokens, states)})
            except Exception:  # the status line is sent already: report in the stream
                log.exception("stream failed")
                yield sse(error_body("The server failed while streaming.", "server_error"))
            yield sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream")
