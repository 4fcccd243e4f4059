"""Reply bodies of the OpenAI API: per-choice state, logprobs objects, usage.

Completions logprobs follow OpenAI's legacy format, which log-likelihood evaluation
reads (echo=true, logprobs=k, max_tokens=0 scores a prompt):

    {"tokens": [" the", ...], "token_logprobs": [null, -2.3, ...],
     "top_logprobs": [null, {" a": -1.2}, ...], "text_offset": [0, 4, ...]}

`text_offset` is each token's character offset in the choice's text (echoed prompt
included), so a caller finds where a continuation starts without a tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medbase_ray.serve.engine import StepOutput, TokenLogprob

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

LogprobAt = tuple[TokenLogprob, int]  # an entry and its character offset in the text


def prompt_offsets(
    tokenizer: PreTrainedTokenizerBase, text: str, ids: list[int], as_text: bool
) -> list[int]:
    """Character offset of each prompt token in `text`."""
    if as_text and tokenizer.is_fast:
        enc = tokenizer(text, return_offsets_mapping=True)
        if enc["input_ids"] == ids:
            return [start for start, _ in enc["offset_mapping"]]
    # Token-id prompts: the length of the decoded prefix before each token.
    return [len(tokenizer.decode(ids[:i])) for i in range(len(ids))]


@dataclass
class ChoiceState:
    """One choice being assembled from a sequence's step outputs."""

    index: int
    text: str  # echoed prompt (if any) + generated text so far
    offsets: list[int]  # prompt tokens' character offsets (when the prompt is scored)
    tokenizer: PreTrainedTokenizerBase | None = None
    logprobs: list[LogprobAt] = field(default_factory=list)
    generated_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    started: bool = False

    def __post_init__(self) -> None:
        self.echo_chars = len(self.text)

    def add(self, output: StepOutput) -> list[LogprobAt]:
        """Apply one step output; returns its new logprob entries with their offsets."""
        new: list[LogprobAt] = []
        if output.prompt_logprobs is not None:
            new += list(zip(output.prompt_logprobs, self.offsets, strict=True))
        for k, entry in enumerate(output.logprobs):  # one per token of output.token_ids
            before = self.generated_ids + output.token_ids[:k]
            new.append((entry, self.echo_chars + self._decoded_len(before)))
        self.generated_ids += output.token_ids
        self.started = True
        self.text += output.text
        self.finish_reason = output.finish_reason or self.finish_reason
        self.logprobs += new
        return new

    def _decoded_len(self, ids: list[int]) -> int:
        if not ids or self.tokenizer is None:
            return 0
        return len(self.tokenizer.decode(ids, skip_special_tokens=True))


def token_text(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    return tokenizer.decode([token_id])


def completion_logprobs(
    tokenizer: PreTrainedTokenizerBase, entries: list[LogprobAt]
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": []}
    out |= {"top_logprobs": [], "text_offset": []}
    for entry, offset in entries:
        out["tokens"].append(token_text(tokenizer, entry.token_id))
        out["token_logprobs"].append(entry.logprob)
        top = None
        if entry.logprob is not None:
            top = {token_text(tokenizer, i): lp for i, lp in entry.top}
        out["top_logprobs"].append(top)
        out["text_offset"].append(offset)
    return out


def chat_logprobs(
    tokenizer: PreTrainedTokenizerBase, entries: list[LogprobAt]
) -> dict[str, list[dict]]:
    def item(token_id: int, logprob: float | None) -> dict[str, Any]:
        text = token_text(tokenizer, token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    content = []
    for entry, _ in entries:
        top = [item(i, lp) for i, lp in entry.top]
        content.append(item(entry.token_id, entry.logprob) | {"top_logprobs": top})
    return {"content": content}


def usage(n_prompt_tokens: int, states: list[ChoiceState]) -> dict[str, int]:
    completion = sum(len(s.generated_ids) for s in states)
    return {
        "prompt_tokens": n_prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": n_prompt_tokens + completion,
    }
