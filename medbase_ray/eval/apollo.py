"""Apollo's own evaluation, reproduced exactly: `eval.apollo_compat: true`.

For a user comparing with the published table, this mode does what Apollo's code does
(FreedomIntelligence/Apollo, src/process/prepare/data_process_test_*.py builds the
prompts, src/evaluate/generate_score.py scores the answers), and nothing else:

- templates per source (prompts.yaml `apollo_compat:`): the Chinese sources' shots use
  the Chinese template and their question the English one; sources outside Apollo's
  lists use the PubMedQA template (with its context) as Apollo's `else:` does;
- shots: k + 1 items drawn at random from the same source's items (the benchmark split
  itself, not a dev split), the item removed if drawn, else the last one dropped; each
  shot is added only while the prompt stays under 4,096 characters, and an item whose
  prompt is still over 4,096 is skipped (`build_apollo_prompts` counts them);
- the answer key is the first letter of the answer (`answer[1]` of `"(BCDE)"`: B);
- extraction (`extract_apollo_answer`): the first non-empty line; the most frequent
  `[（(][A-Fa-f][）)]` letter, ties to the first seen; else the most frequent bare
  capital A-F anywhere in that line; else "Yes." -> A, "No." -> B; else None.

Apollo's draw is unseeded (`random.sample`); here it is seeded by (seed, item id), so a
run is repeatable and equal to one of Apollo's draws. Apollo generated greedily with
max_new_tokens 256 and min_new_tokens 2 (src/evaluate/eval_qwen.py); set
eval.max_new_tokens / eval.min_new_tokens to match.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medbase_ray.eval.prompts import CountTokens, Prompt, RenderTurns, prompts_data

MAX_PROMPT_CHARS = 4096  # Apollo's limit, in characters of the whole prompt
_PARENTHESISED = re.compile(r"[（\(]([A-Fa-f])[）\)]")
_LOOSE = re.compile(r"[A-F]")


@dataclass(frozen=True)
class ApolloTemplate:
    question: str  # the user turn: {question}, {options} and for PubMedQA {context}
    answer: str  # the assistant turn of a shot: {answer} is the raw "(B)"


def apollo_templates() -> dict[str, ApolloTemplate]:
    spec = prompts_data()["apollo_compat"]
    return {name: ApolloTemplate(**t) for name, t in spec["templates"].items()}


def templates_of_source(source: str) -> tuple[ApolloTemplate, ApolloTemplate]:
    """(shot template, question template) of a source, as Apollo's if/elif chain picks."""
    spec = prompts_data()["apollo_compat"]
    templates = apollo_templates()
    shot, question = spec["sources"].get(source, spec["other_sources"])
    return templates[shot], templates[question]


def answer_key(item: dict[str, Any]) -> str:
    """Apollo's `item['answer'][1]`: the first letter, so "(BCDE)" counts as B."""
    return item["answer"][0]


def _user_turn(template: ApolloTemplate, item: dict[str, Any]) -> str:
    return template.question.format(
        question=item["question"], options=item["options"], context=item.get("context") or ""
    )


def _same_item(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # Apollo's `item in random_samples` compares the raw dicts: equal content is equal.
    keys = ("question", "options", "answer", "context")
    return all(a.get(k) == b.get(k) for k in keys)


def draw_shots(
    item: dict[str, Any], source_items: Sequence[dict[str, Any]], k: int, seed: int
) -> list[dict[str, Any]]:
    """Apollo's draw: k + 1 of the source's items; the item out if drawn, else the last."""
    rng = random.Random(f"{seed}:{item['id']}")  # SHA-512 of the str: stable everywhere
    drawn = rng.sample(list(source_items), min(k + 1, len(source_items)))
    for i, other in enumerate(drawn):
        if _same_item(other, item):
            return drawn[:i] + drawn[i + 1 :]
    return drawn[:-1]


def build_apollo_prompt(
    item: dict[str, Any],
    source_items: Sequence[dict[str, Any]],
    k_shot: int,
    seed: int,
    render: RenderTurns,
    count_tokens: CountTokens = len,
) -> Prompt | None:
    """The prompt Apollo's code builds for `item`, or None when Apollo skips it (> 4,096)."""
    shot_template, question_template = templates_of_source(item["source"])
    query = _user_turn(question_template, item)
    turns: list[str] = []
    for shot in draw_shots(item, source_items, k_shot, seed):
        pair = [
            _user_turn(shot_template, shot),
            shot_template.answer.format(answer=f"({shot['answer']})"),
        ]
        # Apollo: len(shots so far) + len(question) + len(this shot) < 4096, then add;
        # a later, shorter shot may still fit after a long one was left out.
        if len(render([*turns, *pair, query])) < MAX_PROMPT_CHARS:
            turns += pair
    context = render([*turns, query])
    if len(context) > MAX_PROMPT_CHARS:
        return None
    return Prompt(context, None, len(turns) // 2, count_tokens(context))


def build_apollo_prompts(
    items: Sequence[dict[str, Any]],
    k_shot: int,
    seed: int,
    render: RenderTurns,
    count_tokens: CountTokens = len,
) -> tuple[dict[str, Prompt], dict[str, int]]:
    """Prompts of every item Apollo keeps, and per source the number it skips."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_source.setdefault(item["source"], []).append(item)
    prompts: dict[str, Prompt] = {}
    skipped: dict[str, int] = {}
    for item in items:
        prompt = build_apollo_prompt(
            item, by_source[item["source"]], k_shot, seed, render, count_tokens
        )
        if prompt is None:
            skipped[item["source"]] = skipped.get(item["source"], 0) + 1
        else:
            prompts[item["id"]] = prompt
    return prompts, skipped


def _first_nonempty_line(text: str) -> str:
    # Apollo: only when the text has a newline, the first line of non-zero length
    # (a line of spaces counts); a text without one is used whole, spaces included.
    if "\n" in text:
        for line in text.split("\n"):
            if line:
                return line
    return text


def _most_frequent_first(letters: list[str]) -> str:
    counts: dict[str, int] = {}
    for letter in letters:
        counts[letter] = counts.get(letter, 0) + 1
    best = max(counts.values())
    return next(letter for letter, n in counts.items() if n == best)


def extract_apollo_answer(text: str | None) -> str | None:
    """generate_score.py's `extract_and_choose_answer`, in behaviour (see the docstring)."""
    line = _first_nonempty_line(text or "")
    parenthesised = [m.upper() for m in _PARENTHESISED.findall(line)]
    if parenthesised:
        return _most_frequent_first(parenthesised)
    loose = _LOOSE.findall(line)
    if loose:
        return _most_frequent_first(loose)
    return {"Yes.": "A", "No.": "B"}.get(line)
