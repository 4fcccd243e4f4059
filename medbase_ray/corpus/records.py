"""The data contracts of DESIGN.md as Arrow schemas, and row validators.

A validator returns None for a good row or `(field, reason)` for a bad one, so that
callers can raise or reject as they are asked to.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

RAW_TEXT_SCHEMA = pa.schema(
    [("id", pa.string()), ("source", pa.string()), ("language", pa.string()), ("text", pa.string())]
)
CONVERSATION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("language", pa.string()),
        ("turns", pa.list_(pa.string())),
    ]
)
PACKED_ROW_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("position_ids", pa.list_(pa.int32())),
        ("source", pa.string()),
        ("language", pa.string()),
        ("n_real_tokens", pa.int32()),
    ]
)
EVAL_ITEM_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("language", pa.string()),
        ("question", pa.string()),
        ("options", pa.string()),
        ("answer", pa.string()),
        ("context", pa.string()),
    ]
)
REJECT_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("index", pa.int64()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),
    ]
)

Problem = tuple[str, str] | None

_OPTION_RE = re.compile(r"^\(([A-Z])\)\s?(.*)$")
# "(B)", "B", "(B) text", "(BCDE)", "BCDE": one or more letters, bracketed or not
_ANSWER_RE = re.compile(r"^\s*\(?([A-Za-z]{1,26})\)?(?:\s|$)")


def check_text(text: Any) -> Problem:
    if not isinstance(text, str):
        return "text", f"expected a string, got {type(text).__name__}"
    if not text.strip():
        return "text", "empty text"
    return None


def check_turns(turns: Any) -> Problem:
    """A conversation: a non-empty, even-length list of non-empty strings (user first)."""
    if not isinstance(turns, list):
        return "turns", f"expected a list of strings, got {type(turns).__name__}"
    if not turns:
        return "turns", "no turns"
    for i, turn in enumerate(turns):
        if not isinstance(turn, str):
            return f"turns[{i}]", f"expected a string, got {type(turn).__name__}"
        if not turn.strip():
            return f"turns[{i}]", "empty turn"
    if len(turns) % 2:
        return "turns", f"odd number of turns ({len(turns)}): every user turn needs an answer"
    return None


def parse_options(options: str) -> dict[str, str]:
    """`"(A) x\\n(B) y"` -> {"A": "x", "B": "y"}. Raises ValueError on a bad line."""
    parsed: dict[str, str] = {}
    for line in options.splitlines():
        if not line.strip():
            continue
        m = _OPTION_RE.match(line.strip())
        if m is None:
            if not parsed:
                raise ValueError(f"option line {line!r} does not start with '(A) '")
            # A continuation of the previous option's text.
            last = next(reversed(parsed))
            parsed[last] += "\n" + line
            continue
        letter, text = m.groups()
        if letter in parsed:
            raise ValueError(f"option ({letter}) appears twice")
        parsed[letter] = text.strip()
    return parsed


def normalize_answer(answer: Any) -> str | None:
    """The answer's letters: `"(B)"`, `"B"`, `"(B) text"` -> "B"; CMExam's multi-answer
    `"(BCDE)"` -> "BCDE" (every letter kept, in the order given); None when no letter
    can be read."""
    if not isinstance(answer, str):
        return None
    m = _ANSWER_RE.match(answer)
    if m is None:
        return None
    letters = "".join(dict.fromkeys(m.group(1).upper()))
    return letters if len(letters) == len(m.group(1)) else None


def check_eval_item(item: Any) -> Problem:
    if not isinstance(item, dict):
        return "<item>", f"expected an object, got {type(item).__name__}"
    for field in ("question", "options", "answer"):
        if field not in item:
            return field, "missing"
    if not isinstance(item["question"], str) or not item["question"].strip():
        return "question", "expected a non-empty string"
    if not isinstance(item["options"], str) or not item["options"].strip():
        return "options", "expected a non-empty string of '(A) ...' lines"
    try:
        options = parse_options(item["options"])
    except ValueError as exc:
        return "options", str(exc)
    if len(options) < 2:
        return "options", f"expected at least 2 options, got {len(options)}"
    letters = normalize_answer(item["answer"])
    if letters is None:
        return "answer", f"not one or more option letters: {item['answer']!r}"
    outside = [c for c in letters if c not in options]
    if outside:
        named = ", ".join(f"({c})" for c in outside)
        verb = "is" if len(outside) == 1 else "are"
        return "answer", f"{named} {verb} not one of the options ({', '.join(options)})"
    context = item.get("context")
    if context is not None and not (
        isinstance(context, str)
        or (isinstance(context, list) and all(isinstance(c, str) for c in context))
    ):
        return "context", "expected a string or a list of strings"
    return None
