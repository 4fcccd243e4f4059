"""`--dry-run`: how many requests and about how many tokens a run would spend.

Tokens are estimated without a tokenizer: ~4 ASCII characters per token, one token per
other character (CJK, Devanagari and Arabic letters are 1-2 tokens each in common BPE
vocabularies). Answers are assumed as long as what they are made from, capped at
max_tokens; `max_completion_tokens` is the hard upper bound.
"""

from __future__ import annotations

from typing import Any

from medbase_ray.rewrite.parsing import format_conversation
from medbase_ray.rewrite.prompts import PromptSet, language_name
from medbase_ray.rewrite.tasks import translate_items

# A generated question is short; this is its assumed size in the second qa prompt.
QUESTION_TOKENS = 64


def approx_tokens(text: str) -> int:
    ascii_chars = sum(c.isascii() for c in text)
    return -(-ascii_chars // 4) + (len(text) - ascii_chars)


def estimate_item(
    item: dict[str, Any], prompts: PromptSet, max_tokens: int, max_input_chars: int
) -> tuple[int, int, int]:
    """(requests, prompt tokens, completion tokens) of one item (an input over
    max_input_chars is rejected before any request)."""
    lang = item["language"]
    if item["task"] in ("qa", "dialogue"):
        text = item["text"]
        if len(text) > max_input_chars:
            return 0, 0, 0
        body = min(max_tokens, approx_tokens(text))
        if item["task"] == "dialogue":
            return 1, approx_tokens(prompts.render("dialogue", lang, text=text)), body
        question = min(max_tokens, QUESTION_TOKENS)
        first = approx_tokens(prompts.render("qa_question", lang, text=text))
        second = approx_tokens(prompts.render("qa_answer", lang, question="", reference=text))
        return 2, first + second + question, question + body
    turns = item["turns"]
    if sum(map(len, turns)) > max_input_chars:
        return 0, 0, 0
    conversation = format_conversation(turns)
    body = min(max_tokens, approx_tokens(conversation))
    source = language_name(item["source_language"])
    forward = approx_tokens(
        prompts.render("translate", lang, conversation=conversation, source_language=source)
    )
    back = approx_tokens(
        prompts.render(
            "translate",
            item["source_language"],
            conversation="",
            source_language=language_name(lang),
        )
    )
    return 2, forward + back + body, 2 * body


def assumed_translations(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The translate items a qa / dialogue item would chain, were all to succeed: its
    conversation assumed to be its passage (after a question, for qa)."""
    turns = (["q" * 4 * QUESTION_TOKENS] if item["task"] == "qa" else []) + [item["text"]]
    conversation = {k: item[k] for k in ("id", "source", "language")} | {"turns": turns}
    return translate_items([conversation], item["targets"])


def estimate_items(
    items: list[dict[str, Any]], prompts: PromptSet, max_tokens: int, max_input_chars: int
) -> dict[str, int]:
    """Figures of the items, with the translations they would chain (`chained_items`)."""
    requests = prompt_tokens = completion_tokens = chained = 0
    for item in items:
        follow = assumed_translations(item) if item.get("targets") else []
        chained += len(follow)
        for one in [item, *follow]:
            r, p, c = estimate_item(one, prompts, max_tokens, max_input_chars)
            requests, prompt_tokens, completion_tokens = (
                requests + r,
                prompt_tokens + p,
                completion_tokens + c,
            )
    return {
        "items": len(items),
        "chained_items": chained,
        "requests": requests,
        "approx_prompt_tokens": prompt_tokens,
        "approx_completion_tokens": completion_tokens,
        "approx_total_tokens": prompt_tokens + completion_tokens,
        "max_completion_tokens": requests * max_tokens,
    }
