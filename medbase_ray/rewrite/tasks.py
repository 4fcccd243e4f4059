"""The rewrite tasks: work items, and one coroutine per task that turns an item into a
conversation record or a rejection (pure asyncio + the teacher; no Ray).

    item = {"id", "input_id", "task", "source", "language", "source_language", "text",
            "turns", "targets"}

`language` is the language the output must be in (the target language for translate).
A qa / dialogue item with `targets` goes on to translate the conversation it made into
each of them, in the same call: its results (the conversation and its translations)
are written together, so a killed run never leaves half of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from medbase_ray.rewrite.parsing import (
    Rejected,
    check_turns,
    chrf,
    format_conversation,
    parse_conversation,
    parse_dialogue,
    parse_single,
)
from medbase_ray.rewrite.prompts import PromptSet, language_name
from medbase_ray.rewrite.teacher import Teacher, Usage

GENERATE_TASKS = ("qa", "dialogue")

ITEM_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_id", pa.string()),
        ("task", pa.string()),
        ("source", pa.string()),
        ("language", pa.string()),
        ("source_language", pa.string()),
        ("text", pa.string()),
        ("turns", pa.list_(pa.string())),
        ("targets", pa.list_(pa.string())),
    ]
)
# One row per item: `reason` is null for an output, set for a reject.
RESULT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_id", pa.string()),
        ("task", pa.string()),
        ("source", pa.string()),
        ("language", pa.string()),
        ("turns", pa.list_(pa.string())),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),
        ("requests", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
    ]
)
RAW_LIMIT_CHARS = 2000


def item_id(input_id: str, task: str, target_language: str | None = None) -> str:
    """Deterministic output id: the same input and task always give the same id."""
    return f"{input_id}#{task}" + (f"-{target_language}" if target_language else "")


def generate_items(
    records: list[dict[str, Any]], tasks: list[str], targets: list[str] = ()
) -> list[dict[str, Any]]:
    """qa / dialogue items from raw text records (translated on into `targets`)."""
    return [
        {
            "id": item_id(r["id"], task),
            "input_id": r["id"],
            "task": task,
            "source": r["source"],
            "language": r["language"],
            "source_language": r["language"],
            "text": r["text"],
            "turns": None,
            "targets": list(targets),
        }
        for r in records
        for task in tasks
        if task in GENERATE_TASKS
    ]


def translate_items(
    conversations: list[dict[str, Any]], targets: list[str]
) -> list[dict[str, Any]]:
    """translate items: each conversation into each target other than its own language."""
    return [
        {
            "id": item_id(c["id"], "translate", target),
            "input_id": c["id"],
            "task": "translate",
            "source": c["source"],
            "language": target,
            "source_language": c["language"],
            "text": None,
            "turns": list(c["turns"]),
            "targets": [],
        }
        for c in conversations
        for target in targets
        if target != c["language"]
    ]


@dataclass(frozen=True)
class Checks:
    """The validation settings of RewriteConfig that the tasks need."""

    min_turn_chars: int
    max_turn_chars: int
    max_input_chars: int
    chrf_threshold: float


async def run_qa(item: dict, teacher: Teacher, prompts: PromptSet, usage: Usage) -> list[str]:
    """Apollo's instruction back-translation: a question the passage answers, then an
    answer to it grounded in the passage (two calls)."""
    lang, text = item["language"], item["text"]
    answer = await teacher.complete(prompts.render("qa_question", lang, text=text), usage)
    question = parse_single(answer, "question")
    prompt = prompts.render("qa_answer", lang, question=question, reference=text)
    reply = parse_single(await teacher.complete(prompt, usage), "answer")
    return [question, reply]


async def run_dialogue(item: dict, teacher: Teacher, prompts: PromptSet, usage: Usage) -> list[str]:
    prompt = prompts.render("dialogue", item["language"], text=item["text"])
    return parse_dialogue(await teacher.complete(prompt, usage))


async def translate_turns(
    turns: list[str], source: str, target: str, teacher: Teacher, prompts: PromptSet, usage: Usage
) -> list[str]:
    prompt = prompts.render(
        "translate",
        target,
        conversation=format_conversation(turns),
        source_language=language_name(source),
    )
    return parse_conversation(await teacher.complete(prompt, usage), len(turns))


async def run_translate(
    item: dict, teacher: Teacher, prompts: PromptSet, usage: Usage, checks: Checks
) -> list[str]:
    """Translate, check the language, translate back; keep if the round trip's chrF
    against the original reaches the threshold."""
    original, source, target = list(item["turns"]), item["source_language"], item["language"]
    translated = await translate_turns(original, source, target, teacher, prompts, usage)
    check_turns(translated, target, checks.min_turn_chars, checks.max_turn_chars)
    back = await translate_turns(translated, target, source, teacher, prompts, usage)
    score = chrf(back, original)
    if score < checks.chrf_threshold:
        raise Rejected("round_trip_failed", f"chrF {score:.1f} < {checks.chrf_threshold}")
    return translated


def _input_size_chars(item: dict) -> int:
    return len(item["text"]) if item["text"] is not None else sum(map(len, item["turns"]))


async def process_item(
    item: dict, teacher: Teacher, prompts: PromptSet, checks: Checks
) -> list[dict[str, Any]]:
    """One item -> its result row, then those of the translations of its conversation."""
    result = await _process_one(item, teacher, prompts, checks)
    if result["reason"] is not None or not item.get("targets"):
        return [result]
    follow = translate_items([result], item["targets"])
    return [result] + list(
        await asyncio.gather(*(_process_one(t, teacher, prompts, checks) for t in follow))
    )


async def _process_one(
    item: dict, teacher: Teacher, prompts: PromptSet, checks: Checks
) -> dict[str, Any]:
    """One item -> one result row (an output when `reason` is None, else a reject)."""
    usage = Usage()
    turns: list[str] | None = None
    reason = detail = raw = None
    try:
        size = _input_size_chars(item)
        if size > checks.max_input_chars:
            raise Rejected("too_long", f"input has {size} chars (> {checks.max_input_chars})")
        if item["task"] == "qa":
            turns = await run_qa(item, teacher, prompts, usage)
        elif item["task"] == "dialogue":
            turns = await run_dialogue(item, teacher, prompts, usage)
        else:
            turns = await run_translate(item, teacher, prompts, usage, checks)
        if item["task"] != "translate":  # translate checked its own output already
            check_turns(turns, item["language"], checks.min_turn_chars, checks.max_turn_chars)
    except Rejected as exc:
        reason, detail, raw = exc.reason, exc.detail, exc.raw[:RAW_LIMIT_CHARS] or None
        turns = None
    return {
        "id": item["id"],
        "input_id": item["input_id"],
        "task": item["task"],
        "source": item["source"],
        "language": item["language"],
        "turns": turns,
        "reason": reason,
        "detail": detail,
        "raw": raw,
        **{k: v for k, v in usage.as_dict().items() if k != "total_tokens"},
    }


async def process_items(
    items: list[dict],
    teacher: Teacher,
    prompts: PromptSet,
    checks: Checks,
    on_results: Callable[[list[dict]], None] | None = None,
) -> list[dict[str, Any]]:
    """All items concurrently (the teacher bounds the requests in flight); the results
    of all of them, flat. `on_results` sees those of each item as it finishes."""

    async def one(item: dict) -> list[dict]:
        results = await process_item(item, teacher, prompts, checks)
        if on_results is not None:
            on_results(results)
        return results

    return [r for rs in await asyncio.gather(*(one(item) for item in items)) for r in rs]
