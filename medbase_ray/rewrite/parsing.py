"""Parse and validate teacher answers (pure functions, no I/O).

Each function returns the turns, or raises `Rejected(reason, detail)` with one of the
reasons below; the runner turns that into one rejects row.
"""

from __future__ import annotations

import re

from medbase_ray.corpus.languages import looks_like_language

# Why an item was rejected: one of these in the `reason` column of rejects/.
REASONS = (
    "bad_input",  # the input row itself is unusable
    "teacher_error",  # the request failed after the client's retries
    "unparsable",  # the answer lacks the expected tags/fields, or is empty
    "wrong_language",  # the answer is not in the requested language
    "round_trip_failed",  # translate: the back-translation disagrees with the original
    "too_long",  # input over max_input_chars, answer cut at max_tokens, or turn too long
)

_PAIR = re.compile(r"<Patient>(.*?)</Patient>\s*<Doctor>(.*?)</Doctor>", re.DOTALL)
_CONV_PAIR = re.compile(r"<User>(.*?)</User>\s*<Assistant>(.*?)</Assistant>", re.DOTALL)
# Labels a teacher sometimes echoes from Apollo's prompts ("<question>: ...").
_LABEL = re.compile(r"^\s*<(question|reply|answer)>\s*:?\s*", re.IGNORECASE)


class Rejected(Exception):
    """An item ends in the rejects file: why (`reason`, one of REASONS), the details,
    and the teacher's text that was refused (`raw`, when there was one)."""

    def __init__(self, reason: str, detail: str, raw: str = "") -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.raw = reason, detail, raw


def parse_single(text: str, field: str) -> str:
    """A question or an answer: the text without an echoed `<question>:` label."""
    value = _LABEL.sub("", text, count=1).strip()
    if not value:
        raise Rejected("unparsable", f"empty {field}", text)
    return value


def parse_dialogue(text: str) -> list[str]:
    """`<Patient>q</Patient><Doctor>a</Doctor>...` -> [q, a, ...] (Apollo's format)."""
    turns = [t.strip() for pair in _PAIR.findall(text) for t in pair]
    if not turns:
        raise Rejected("unparsable", "no <Patient>…</Patient><Doctor>…</Doctor> pair", text)
    return turns


def format_conversation(turns: list[str]) -> str:
    """Turns as `<User>…</User><Assistant>…</Assistant>` lines, for the translate prompt."""
    tags = ("User", "Assistant")
    return "\n".join(f"<{tags[i % 2]}>{t}</{tags[i % 2]}>" for i, t in enumerate(turns))


def parse_conversation(text: str, n_turns: int) -> list[str]:
    """The inverse of format_conversation; the number of turns must be kept."""
    turns = [t.strip() for pair in _CONV_PAIR.findall(text) for t in pair]
    if not turns:
        raise Rejected("unparsable", "no <User>…</User><Assistant>…</Assistant> pair", text)
    if len(turns) != n_turns:
        raise Rejected("unparsable", f"expected {n_turns} turns back, got {len(turns)}", text)
    return turns


def check_turns(
    turns: list[str], language: str, min_turn_chars: int, max_turn_chars: int
) -> list[str]:
    """Length bounds per turn, then the language of every turn."""
    raw = "\n".join(turns)
    for i, turn in enumerate(turns):
        if len(turn) < min_turn_chars:
            raise Rejected(
                "unparsable", f"turn {i} has {len(turn)} chars (< {min_turn_chars})", raw
            )
        if len(turn) > max_turn_chars:
            raise Rejected("too_long", f"turn {i} has {len(turn)} chars (> {max_turn_chars})", raw)
    for i, turn in enumerate(turns):
        if not looks_like_language(turn, language):
            raise Rejected("wrong_language", f"turn {i} does not look like {language!r}", raw)
    return turns


def chrf(hypothesis: list[str], reference: list[str]) -> float:
    """chrF (sacrebleu, 0-100) of a round trip against the original conversation."""
    import sacrebleu  # only translate needs it; keeps actor start-up light

    return sacrebleu.sentence_chrf("\n".join(hypothesis), ["\n".join(reference)]).score
