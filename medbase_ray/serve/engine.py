"""The generation core of the serve stage: batched decoding with per-sequence sampling.

No Ray here. A Serve replica hands a batch of `SequenceJob`s to `Engine.decode` and
forwards what each step yields; tests call it directly.

Why a decode loop and not `model.generate`: one batch mixes requests that each have
their own temperature, top_p, seed, stop strings, max_tokens and logprobs, and the
tokens are streamed as they come; `generate` takes one generation config and one global
RNG per call. The loop is generate's own greedy/sampling path (left padding, attention
mask, position ids from the mask, a `DynamicCache`), with the sampling done per row by
transformers' logits warpers, and finished rows dropped from the batch and the cache.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from medbase_ray.models.loading import load_model, load_tokenizer

# torch and transformers are imported inside the functions that compute: the request
# schemas and handlers import this module for its dataclasses, without a model.
if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class SequenceJob:
    """One sequence to decode: a tokenized prompt and how to continue it."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # top-k alternatives per generated token; None: no logprobs
    min_tokens: int = 0  # end-of-text is not chosen before this many tokens (vLLM's extension)
    prompt_logprobs: int | None = None  # score the prompt too (echo), with top-k alternatives

    @property
    def greedy(self) -> bool:
        # Below this, logits / temperature overflows float32 (NaN probabilities), and
        # sampling is argmax anyway.
        return self.temperature < 1e-4


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float | None  # None for the first prompt token (nothing predicts it)
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class StepOutput:
    """What one decode step adds to one sequence."""

    text: str = ""  # new text, held back while it could still be part of a stop string
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" (EOS or stop string) or "length"
    prompt_logprobs: list[TokenLogprob] | None = None  # only in a sequence's first output


class StopTextTracker:
    """Detokenizes one sequence incrementally and applies its stop strings.

    Text is released only once it is final: not a trailing partial UTF-8 character
    (byte-level BPE splits characters across tokens) and not a possible beginning of a
    stop string, so streamed text never has to be taken back.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.holdback_chars = max((len(s) for s in self.stop), default=1) - 1
        self.ids: list[int] = []
        self.emitted_chars = 0
        self.text = ""

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add a token; returns (new final text, whether a stop string was hit)."""
        self.ids.append(token_id)
        self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        hits = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return self.flush(), True
        safe = len(self.text.rstrip("\ufffd")) if self.text.endswith("\ufffd") else len(self.text)
        safe = min(safe, len(self.text) - self.holdback_chars)
        if safe <= self.emitted_chars:
            return "", False
        delta = self.text[self.emitted_chars : safe]
        self.emitted_chars = safe
        return delta, False

    def flush(self) -> str:
        delta = self.text[self.emitted_chars :]
        self.emitted_chars = len(self.text)
        return delta


def top_alternatives(logprobs: torch.Tensor, k: int) -> tuple[tuple[int, float], ...]:
    """The k most likely tokens of a (vocab,) log-probability row."""
    if k <= 0:
        return ()
    values, ids = logprobs.topk(k)
    return tuple(zip(ids.tolist(), values.tolist(), strict=True))


def score_prompt(logits: torch.Tensor, prompt_ids: Sequence[int], top_k: int) -> list[TokenLogprob]:
    """Log-probabilities of each prompt token given the ones before it.

    logits: (len(prompt_ids), vocab), the model's outputs at the prompt positions.
    """
    import torch

    ids = torch.tensor(prompt_ids[1:], dtype=torch.long, device=logits.device)
    logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)  # (L-1, vocab)
    picked = logprobs.gather(-1, ids[:, None])[:, 0].tolist()
    scored = [TokenLogprob(prompt_ids[0], None)]
    for pos, (token_id, lp) in enumerate(zip(prompt_ids[1:], picked, strict=True)):
        scored.append(TokenLogprob(token_id, lp, top_alternatives(logprobs[pos], top_k)))
    return scored


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    import torch

    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # a fresh non-deterministic seed
    else:
        generator.manual_seed(seed)
    return generator


def pick_token(logits: torch.Tensor, job: SequenceJob, generator: torch.Generator) -> int:
    """Greedy at temperature 0, else temperature + nucleus sampling on a (vocab,) row."""
    import torch
    from transformers.generation.logits_process import TopPLogitsWarper

    if job.greedy:
        return int(logits.argmax())
    scores = logits.float()[None] / job.temperature
    if job.top_p < 1.0:
        scores = TopPLogitsWarper(job.top_p)(None, scores)
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs[0], 1, generator=generator))


@dataclass
class Engine:
    """A causal LM and its tokenizer, decoding batches of sequences."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    eos_ids: frozenset[int]
    pad_id: int

    @classmethod
    def load(
        cls,
        model_path: str,
        dtype: str = "auto",
        device: str = "cpu",
        trust_remote_code: bool = False,
        tokenizer_path: str | None = None,
    ) -> Engine:
        """The model at `model_path`, its tokenizer from `tokenizer_path` (default: the same)."""
        tokenizer = load_tokenizer(tokenizer_path or model_path, trust_remote_code)
        model = load_model(model_path, dtype, device, trust_remote_code).eval()
        eos = model.generation_config.eos_token_id
        eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = min(eos_ids) if eos_ids else 0
        return cls(model, tokenizer, frozenset(eos_ids), pad_id)

    def forward(self, input_ids, mask, position_ids, cache, all_logits: bool = False):
        """One forward pass over new tokens; (batch, new tokens or 1, vocab) logits."""
        import torch

        with torch.no_grad():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,  # (batch, all tokens so far): 0 on the left padding
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
                logits_to_keep=0 if all_logits else 1,  # 0: every position
            )
        return out.logits

    def decode(self, jobs: Sequence[SequenceJob]) -> Iterator[list[StepOutput | None]]:
        """Decode a batch; yields, per step, one output per job (None once it finished).

        A job's first output carries its prompt logprobs (when asked for); a job with
        max_tokens 0 finishes in the first step without generating.
        """
        import torch
        from transformers import DynamicCache

        device = self.model.device
        width = max(len(job.prompt_ids) for job in jobs)
        # Left padding, so that every row's next token goes in the same (last) column.
        input_ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for row, job in enumerate(jobs):
            input_ids[row, width - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids)
            mask[row, width - len(job.prompt_ids) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        cache = DynamicCache(config=self.model.config)
        scoring = any(job.prompt_logprobs is not None for job in jobs)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.forward(input_ids, mask, positions, cache, all_logits=scoring)

        outputs: list[StepOutput | None] = [StepOutput() for _ in jobs]
        for row, (job, out) in enumerate(zip(jobs, outputs, strict=True)):
            if job.prompt_logprobs is not None:
                row_logits = logits[row, width - len(job.prompt_ids) :]
                out.prompt_logprobs = score_prompt(row_logits, job.prompt_ids, job.prompt_logprobs)
            if job.max_tokens == 0:
                out.finish_reason = "length"
        logits = logits[:, -1, :]  # (batch, vocab): the next token of every row
        sequences = [DecodingSequence(job, self.tokenizer, self.eos_ids, device) for job in jobs]
        active = list(range(len(jobs)))  # the job of each row still in the batch

        while True:
            next_ids = self.pick_next(logits, [sequences[j] for j in active], active, outputs)
            yield outputs
            keep = [row for row, j in enumerate(active) if outputs[j].finish_reason is None]
            if not keep:
                return
            outputs = [None] * len(jobs)
            if len(keep) < len(active):  # drop finished rows from the batch and the cache
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask = mask[index]
                next_ids = [next_ids[row] for row in keep]
                active = [active[row] for row in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
            new_ids = torch.tensor(next_ids, device=device)[:, None]
            logits = self.forward(new_ids, mask, mask.sum(-1, keepdim=True) - 1, cache)[:, -1, :]

    def pick_next(
        self,
        logits: torch.Tensor,
        sequences: list[DecodingSequence],
        active: list[int],
        outputs: list[StepOutput | None],
    ) -> list[int]:
        """Choose each row's next token and record it in its job's output."""
        import torch

        want_logprobs = any(seq.job.logprobs is not None for seq in sequences)
        logprobs = torch.log_softmax(logits.float(), dim=-1) if want_logprobs else None
        held = [row for row, seq in enumerate(sequences) if seq.n_generated < seq.job.min_tokens]
        if held and self.eos_ids:
            # Rows under their min_tokens cannot end; the logprobs above stay the model's.
            logits = logits.clone()
            rows = torch.tensor(held, device=logits.device)[:, None]
            logits[rows, torch.tensor(sorted(self.eos_ids), device=logits.device)] = float("-inf")
        greedy_ids = logits.argmax(dim=-1).tolist()  # one op for every greedy row
        next_ids = []
        for row, (seq, j) in enumerate(zip(sequences, active, strict=True)):
            out = outputs[j] = outputs[j] or StepOutput()
            if out.finish_reason is not None:  # max_tokens 0: nothing to generate
                next_ids.append(self.pad_id)
                continue
            job = seq.job
            token_id = greedy_ids[row] if job.greedy else seq.sample(logits[row])
            seq.advance(token_id, None if logprobs is None else logprobs[row], out)
            next_ids.append(token_id)
        return next_ids


class DecodingSequence:
    """One sequence while it decodes: its sampler, its text and stop strings."""

    def __init__(self, job: SequenceJob, tokenizer, eos_ids: frozenset[int], device) -> None:
        self.job, self.eos_ids = job, eos_ids
        self.tracker = StopTextTracker(tokenizer, job.stop)
        self.generator = None if job.greedy else make_generator(job.seed, device)
        self.n_generated = 0

    def sample(self, logits: torch.Tensor) -> int:
        return pick_token(logits, self.job, self.generator)

    def advance(self, token_id: int, logprobs: torch.Tensor | None, out: StepOutput) -> None:
        """Append a token to the output; sets its finish reason when the sequence ends."""
        self.n_generated += 1
        out.token_ids.append(token_id)
        if logprobs is not None and self.job.logprobs is not None:
            top = top_alternatives(logprobs, self.job.logprobs)
            out.logprobs.append(TokenLogprob(token_id, float(logprobs[token_id]), top))
        if token_id in self.eos_ids:  # EOS ends the text; it is not part of it
            out.text += self.tracker.flush()
            out.finish_reason = "stop"
            return
        delta, stopped = self.tracker.push(token_id)
        out.text += delta
        if stopped:
            out.finish_reason = "stop"
        elif self.n_generated >= self.job.max_tokens:
            out.text += self.tracker.flush()
            out.finish_reason = "length"
