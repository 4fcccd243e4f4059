"""The two ways to ask a model: an OpenAI-compatible endpoint, or a checkpoint in-process.

Both answer the same two questions, and the scores agree between them:
- `continuation_logprobs(context, continuations)`: log P(continuation | context) of
  each continuation, the sum over the tokens of `context + continuation` that carry
  some of the continuation (`continuation_logprob` decides that the same way for both);
- `generate(prompt, max_new_tokens)`: greedy text.

A backend may also have `continuation_logprobs_batch([(context, continuations), ...])`
(the in-process one, and the Ray actor's): the runner then hands it batches of items,
longest prompt first, instead of one item at a time.

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
    """A checkpoint loaded with transformers, one forward at a time (a lock guards it).
    `continuation_logprobs_batch` scores several items' prompts in that one forward."""

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

    def _tokenize(
        self, texts: Sequence[str], context_chars: int
    ) -> tuple[list[list[int]], list[list[int]], list[int]]:
        """Token ids, token start offsets, and the index of each text's first
        continuation token (the first token holding a character at or after
        `context_chars`)."""
        enc = self.tokenizer(list(texts), return_offsets_mapping=True)
        ids = enc["input_ids"]
        starts = [[s for s, _ in offsets] for offsets in enc["offset_mapping"]]
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
        return ids, starts, first

    @staticmethod
    def _one_token_each(
        ids: list[list[int]], first: list[int]
    ) -> tuple[list[int], list[int]] | None:
        """(context ids, next ids) when every continuation is one token after the same
        context tokens (loglikelihood mode's option letters): one forward of the
        context then scores them all. None otherwise."""
        shared = ids[0][: first[0]]
        if all(len(x) == f + 1 and x[:f] == shared for x, f in zip(ids, first, strict=True)):
            return shared, [x[-1] for x in ids]
        return None

    def batch_logprobs(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """log P(continuation | context) of each continuation of each (context,
        continuations) request. Requests whose continuations are each one token after
        the same context tokens (loglikelihood mode's letters) share ONE forward of
        their left-padded contexts; the others (cloze) get one forward each, their
        continuations side by side."""
        out: list[list[float] | None] = [None] * len(requests)
        batched: list[tuple[int, list[int], list[int]]] = []
        for n, (context, continuations) in enumerate(requests):
            ids, starts, first = self._tokenize([context + c for c in continuations], len(context))
            one_token = self._one_token_each(ids, first)
            if one_token is None:
                out[n] = self._texts_logprobs(ids, starts, first, len(context))
            else:
                batched.append((n, *one_token))
        if batched:
            scored = self.next_token_logprobs([b[1] for b in batched], [b[2] for b in batched])
            for (n, _, _), logprobs in zip(batched, scored, strict=True):
                out[n] = logprobs
        return out  # type: ignore[return-value]  (every slot is filled above)

    def _padded(self, ids: Sequence[Sequence[int]]):
        """Left-padded input ids, attention mask and position ids: every row ends at the
        last position, and explicit positions make a padded row compute what it
        computes alone."""
        import torch  # heavy: see torch_threads

        length = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([[pad] * (length - len(x)) + list(x) for x in ids])
        mask = torch.tensor([[0] * (length - len(x)) + [1] * len(x) for x in ids])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return input_ids, mask, positions

    def _texts_logprobs(
        self,
        ids: list[list[int]],
        starts: list[list[int]],
        first: list[int],
        context_chars: int,
    ) -> list[float]:
        import torch  # heavy: see torch_threads

        length = max(len(x) for x in ids)
        # Only the logits from the token before the first continuation token on are
        # needed (logits_to_keep), which matters for a 150k vocabulary.
        keep = max(len(x) - f + 1 for x, f in zip(ids, first, strict=True))
        input_ids, mask, positions = self._padded(ids)
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

    def next_token_logprobs(
        self, contexts: Sequence[Sequence[int]], next_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """log P(t | context) for each t of next_ids[i], for every context, in one
        forward of the left-padded contexts keeping the last position's logits only."""
        import torch  # heavy: see torch_threads

        device = next(self.model.parameters()).device
        with torch.inference_mode(), torch_threads(self.cpu_threads):
            if len(contexts) == 1:  # nothing to pad: no mask
                logits = self.model(
                    input_ids=torch.tensor([list(contexts[0])], device=device), logits_to_keep=1
                ).logits
            else:
                input_ids, mask, positions = self._padded(contexts)
                logits = self.model(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    logits_to_keep=1,
                ).logits
            logprobs = torch.log_softmax(logits[:, -1].float(), dim=-1).cpu()
        return [[logprobs[row, t].item() for t in ts] for row, ts in enumerate(next_ids)]

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
            return (await asyncio.to_thread(self.batch_logprobs, [(context, continuations)]))[0]

    async def continuation_logprobs_batch(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[list[float]]:
        async with self._lock:
            return await asyncio.to_thread(self.batch_logprobs, requests)

    async def generate(self, prompt: str, max_new_tokens: int, min_new_tokens: int = 0) -> str:
        async with self._lock:
            return await asyncio.to_thread(
                self.generate_sync, prompt, max_new_tokens, min_new_tokens
            )

    async def aclose(self) -> None:
        return None
