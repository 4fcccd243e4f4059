"""The two ways to ask a model: an OpenAI-compatible endpoint, or a checkpoint in-process.

Both answer the same two questions, and the scores agree between them:
- `continuation_logprobs(context, continuations)`: log P(continuation | context) of
  each continuation, the sum over the tokens of `context + continuation` that carry
  some of the continuation (`continuation_logprob` decides that the same way for both);
- `generate(prompt, max_new_tokens)`: greedy text.

Log-likelihood through the endpoint is ONE request per item: a list `prompt` (one
string per option), `echo: true, logprobs: 1, max_tokens: 0`, which returns every
prompt token's log-prob OpenAI-legacy style. Scoring letters through the next token's
`top_logprobs` instead would only see the top few tokens (an option letter may not be
among them) and could not score multi-token continuations (cloze).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from medbase_ray.models.loading import load_model, load_tokenizer, resolve_model_path


class LanguageModel(Protocol):
    name: str

    async def continuation_logprobs(
        self, context: str, continuations: Sequence[str]
    ) -> list[float]: ...

    async def generate(self, prompt: str, max_new_tokens: int, min_new_tokens: int = 0) -> str: ...

    async def aclose(self) -> None: ...


def continuation_logprob(
    token_logprobs: Sequence[float | None], token_starts: Sequence[int], context_chars: int
) -> float:
    """Sum of the log-probs of the tokens that carry part of the continuation.

    `token_starts` are character offsets into `context + continuation` (OpenAI's
    `text_offset`). A token is in the continuation when it starts at or after the
    context's end, or starts before it and ends after it (a token across the boundary).
    """
    n = len(token_starts)
    total = 0.0
    picked = 0
    for i, start in enumerate(token_starts):
        end = token_starts[i + 1] if i + 1 < n else float("inf")
        if start >= context_chars or end > context_chars:
            lp = token_logprobs[i]
            if lp is None:
                raise ValueError(f"token {i} of the continuation has no log-prob (empty context?)")
            total += lp
            picked += 1
    if picked == 0:
        raise ValueError("the continuation has no tokens")
    return total


class EndpointLM:
    """Any OpenAI-compatible server, through `openai.AsyncOpenAI` (its retries, its timeouts)."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        max_retries: int = 3,
        timeout_s: float = 300.0,
        http_client: Any = None,
    ) -> None:
        from openai import AsyncOpenAI  # heavy (a second to import): endpoint runs only

        # The client needs some key; servers without auth ignore it.
        self.client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "EMPTY",
            max_retries=max_retries,
            timeout=timeout_s,
            http_client=http_client,
        )
        self.base_url = base_url
        self.name = model or ""

    async def resolve_model(self) -> str:
        """The model name to send: the given one, else the first the endpoint lists."""
        if not self.name:
            models = await self.client.models.list()
            if not models.data:
                raise ValueError(f"the endpoint {self.base_url} lists no models")
            self.name = models.data[0].id
        return self.name

    async def continuation_logprobs(
        self, context: str, continuations: Sequence[str]
    ) -> list[float]:
        resp = await self.client.completions.create(
            model=self.name,
            prompt=[context + c for c in continuations],
            echo=True,
            logprobs=1,
            max_tokens=0,
            temperature=0.0,
        )
        choices = sorted(resp.choices, key=lambda c: c.index)
        if len(choices) != len(continuations):
            raise ValueError(f"asked for {len(continuations)} prompts, got {len(choices)} choices")
        out = []
        for choice in choices:
            lp = choice.logprobs
            if lp is None or lp.token_logprobs is None or lp.text_offset is None:
                raise ValueError("the endpoint returned no prompt logprobs for echo=true")
            out.append(continuation_logprob(lp.token_logprobs, lp.text_offset, len(context)))
        return out

    async def generate(self, prompt: str, max_new_tokens: int, min_new_tokens: int = 0) -> str:
        extra = {"min_tokens": min_new_tokens} if min_new_tokens else None
        resp = await self.client.completions.create(
            model=self.name,
            prompt=prompt,
            max_tokens=max_new_tokens,
            temperature=0.0,
            extra_body=extra,
        )
        return resp.choices[0].text

    async def aclose(self) -> None:
        await self.client.close()


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `n` (None: unchanged) for the block, then restored."""
    import torch  # heavy: only the in-process backend needs it, not an endpoint client

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class InProcessLM:
    """A checkpoint loaded with transformers, one forward at a time (a lock guards it)."""

    def __init__(
        self, model: Any, tokenizer: Any, name: str, cpu_threads: int | None = None
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        on_cpu = next(model.parameters()).device.type == "cpu"
        self.cpu_threads = cpu_threads if on_cpu else None
        self._lock = asyncio.Lock()

    @classmethod
    def load(
        cls,
        name_or_path: str,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        tokenizer: Any = None,
        cpu_threads: int | None = None,
    ) -> InProcessLM:
        import torch  # heavy: only the in-process backend needs it, not an endpoint client

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = load_model(name_or_path, dtype, device, trust_remote_code)
        if tokenizer is None:
            tokenizer = load_tokenizer(name_or_path, trust_remote_code)
        return cls(model, tokenizer, resolve_model_path(name_or_path), cpu_threads)

    def token_logprobs(self, texts: Sequence[str], context_chars: int) -> list[float]:
        """log P(text[context_chars:] | text[:context_chars]) for each text, in one forward."""
        import torch  # heavy: see torch_threads

        enc = self.tokenizer(list(texts), return_offsets_mapping=True)
        ids = enc["input_ids"]
        starts = [[s for s, _ in offsets] for offsets in enc["offset_mapping"]]
        # The first continuation token of each text: only the logits from the one
        # before it on are needed (logits_to_keep), which matters for a 150k vocabulary.
        first = []
        for st in starts:
            n = len(st)
            inside = [
                i
                for i in range(n)
                if st[i] >= context_chars or (st[i + 1] if i + 1 < n else 1 << 62) > context_chars
            ]
            if not inside or inside[0] == 0:
                raise ValueError("the continuation has no tokens, or the context none")
            first.append(inside[0])
        shared = ids[0][: first[0]]
        if all(len(x) == f + 1 and x[:f] == shared for x, f in zip(ids, first, strict=True)):
            # Every continuation is one token after the same context tokens (loglikelihood
            # mode's option letters): one forward of the context scores them all.
            return self._next_token_logprobs(shared, [x[-1] for x in ids])
        length = max(len(x) for x in ids)
        keep = max(len(x) - f + 1 for x, f in zip(ids, first, strict=True))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Left padding: every text ends at the last position, so the kept logits line up;
        # explicit position_ids make a padded row compute what it computes alone.
        input_ids = torch.tensor([[pad] * (length - len(x)) + list(x) for x in ids])
        mask = torch.tensor([[0] * (length - len(x)) + [1] * len(x) for x in ids])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = next(self.model.parameters()).device
        with torch.inference_mode(), torch_threads(self.cpu_threads):
            logits = self.model(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                logits_to_keep=keep,
            ).logits  # (batch, keep, vocab)
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        out = []
        for row, (x, st) in enumerate(zip(ids, starts, strict=True)):
            offset = length - len(x)  # padding before the text
            per_token: list[float | None] = [None] * len(x)
            for i in range(first[row], len(x)):
                # Token i is predicted by the logits at padded position offset + i - 1,
                # which is index (offset + i - 1) - (length - keep) of the kept slice.
                k = offset + i - 1 - (length - keep)
                per_token[i] = logprobs[row, k, x[i]].item()
            out.append(continuation_logprob(per_token, st, context_chars))
        return out

    def _next_token_logprobs(self, context_ids: list[int], next_ids: list[int]) -> list[float]:
        """log P(t | context) for each t of next_ids, from one forward of the context."""
        import torch  # heavy: see torch_threads

        device = next(self.model.parameters()).device
        with torch.inference_mode(), torch_threads(self.cpu_threads):
            logits = self.model(
                input_ids=torch.tensor([context_ids], device=device), logits_to_keep=1
            ).logits[0, -1]
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        return [logprobs[t].item() for t in next_ids]

    def generate_sync(self, prompt: str, max_new_tokens: int, min_new_tokens: int = 0) -> str:
        import torch  # heavy: see torch_threads

        enc = self.tokenizer(prompt, return_tensors="pt")
        device = next(self.model.parameters()).device
        with torch.inference_mode(), torch_threads(self.cpu_threads):
            out = self.model.generate(
                input_ids=enc["input_ids"].to(device),
                attention_mask=enc["attention_mask"].to(device),
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens or None,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = out[0, enc["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    async def continuation_logprobs(
        self, context: str, continuations: Sequence[str]
    ) -> list[float]:
        async with self._lock:
            texts = [context + c for c in continuations]
            return await asyncio.to_thread(self.token_logprobs, texts, len(context))

    async def generate(self, prompt: str, max_new_tokens: int, min_new_tokens: int = 0) -> str:
        async with self._lock:
            return await asyncio.to_thread(
                self.generate_sync, prompt, max_new_tokens, min_new_tokens
            )

    async def aclose(self) -> None:
        return None
