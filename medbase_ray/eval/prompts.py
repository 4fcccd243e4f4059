"""Prompts: Apollo's per-language templates (prompts.yaml), k-shot from the dev split.

(Apollo's exact prompts, for `eval.apollo_compat`, are built by eval/apollo.py.)

A prompt is a conversation (shots as user/assistant turns, then the item's user turn)
rendered in the model's chat format, plus what each scoring mode puts after it:

- generate: nothing; the model writes "The correct answer is (B)." itself;
- loglikelihood: the answer phrase and "(", then each option letter is scored;
- cloze: the question alone is the user turn; each option's text is scored as the answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from medbase_ray.corpus.records import parse_options
from medbase_ray.models.chat import apollo_segments

Mode = Literal["generate", "loglikelihood", "cloze"]
CountTokens = Callable[[str], int]
RenderTurns = Callable[[Sequence[str]], str]


class EvalError(ValueError):
    """The evaluation cannot run as configured; the message says what to change."""


@dataclass(frozen=True)
class LanguageTemplate:
    instruction: str
    question_label: str
    options_label: str
    context_label: str
    answer: str  # "The correct answer is {answer}." with answer "(B)"
    cues: tuple[str, ...]

    def answer_turn(self, letter: str) -> str:
        return self.answer.format(answer=f"({letter})")

    def answer_prefix(self) -> str:
        """What the model says before the letter: "The correct answer is (" ."""
        return self.answer.split("{answer}")[0] + "("


@dataclass(frozen=True)
class Prompt:
    """What a scoring function needs for one item.

    `context` is the rendered prompt; `continuations` maps option letters to the text
    scored after it (None in generate mode).
    """

    context: str
    continuations: dict[str, str] | None
    n_shots: int
    n_tokens: int


@cache
def prompts_data() -> dict[str, Any]:
    text = (resources.files("medbase_ray.eval") / "prompts.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def load_templates() -> dict[str, LanguageTemplate]:
    """Language code -> its template (prompts.yaml)."""
    return {
        code: LanguageTemplate(**{**spec, "cues": tuple(spec["cues"])})
        for code, spec in prompts_data()["languages"].items()
    }


def template_for(language: str) -> LanguageTemplate:
    templates = load_templates()
    if language not in templates:
        raise EvalError(
            f"no evaluation prompt for language {language!r}; map the source to one of "
            f"{', '.join(templates)} with eval.source_languages"
        )
    return templates[language]


def question_turn(item: dict[str, Any], template: LanguageTemplate) -> str:
    """The user turn of a multiple-choice item (instruction, context, question, options)."""
    data = prompts_data()
    layout = data["layout"]
    letters = list(parse_options(item["options"]))
    last = letters[-1]
    instruction = data["source_instructions"].get(item["source"], template.instruction)
    context = ""
    if item.get("context"):
        context = layout["context_line"].format(
            context_label=template.context_label, context=item["context"]
        )
    return layout["question_turn"].format(
        instruction=instruction.format(last=last),
        context=context,
        question_label=template.question_label,
        question=item["question"],
        options_label=template.options_label,
        options=item["options"],
    )


def cloze_turn(item: dict[str, Any]) -> str:
    layout = prompts_data()["layout"]
    context = (
        layout["cloze_context_line"].format(context=item["context"]) if item.get("context") else ""
    )
    return layout["cloze_turn"].format(context=context, question=item["question"])


def select_shots(
    item: dict[str, Any], dev_items: Sequence[dict[str, Any]], k: int, seed: int
) -> list[dict[str, Any]]:
    """Up to `k` dev items for `item`: same source first, then same language.

    Seeded by (seed, item id), so an item gets the same shots in every run and process.
    An item never gets itself (or any dev item with its question) as a shot.
    """
    if k == 0:
        return []
    usable = [d for d in dev_items if d["question"] != item["question"]]
    same_source = [d for d in usable if d["source"] == item["source"]]
    same_language = [
        d for d in usable if d["source"] != item["source"] and d["language"] == item["language"]
    ]
    # random.Random seeds a str through SHA-512: stable across processes (unlike hash()).
    rng = random.Random(f"{seed}:{item['id']}")
    shots = rng.sample(same_source, min(k, len(same_source)))
    if len(shots) < k:
        shots += rng.sample(same_language, min(k - len(shots), len(same_language)))
    return shots


def _turns(item: dict[str, Any], shots: Sequence[dict[str, Any]], mode: Mode) -> list[str]:
    """The conversation of a prompt: [shot_q, shot_a, ..., item_q]."""
    template = template_for(item["language"])
    turns: list[str] = []
    for shot in shots:
        shot_template = template_for(shot["language"])
        if mode == "cloze":
            turns += [cloze_turn(shot), parse_options(shot["options"])[shot["answer"]]]
        else:
            turns += [
                question_turn(shot, shot_template),
                shot_template.answer_turn(shot["answer"]),
            ]
    if mode == "cloze":
        turns.append(cloze_turn(item))
    else:
        turns.append(question_turn(item, template))
    return turns


def build_prompt(
    item: dict[str, Any],
    dev_items: Sequence[dict[str, Any]],
    *,
    mode: Mode,
    k_shot: int,
    max_prompt_tokens: int,
    seed: int,
    render: RenderTurns,
    count_tokens: CountTokens,
) -> Prompt:
    """The prompt of one item: as many of its k shots as fit in `max_prompt_tokens`.

    The limit covers the prompt plus the longest scored continuation. Shots are dropped
    from the end until it fits; a zero-shot prompt is kept even when longer.
    """
    options = parse_options(item["options"])
    template = template_for(item["language"])
    shots = select_shots(item, dev_items, k_shot, seed)
    while True:
        context = render(_turns(item, shots, mode))
        continuations: dict[str, str] | None
        if mode == "generate":
            continuations = None
        elif mode == "loglikelihood":
            context += template.answer_prefix()
            continuations = {letter: letter for letter in options}
        else:
            continuations = dict(options)
        longest = max(continuations.values(), key=len) if continuations else ""
        n_tokens = count_tokens(context + longest)
        if n_tokens <= max_prompt_tokens or not shots:
            return Prompt(context, continuations, len(shots), n_tokens)
        shots = shots[:-1]


def render_apollo(turns: Sequence[str]) -> str:
    """Apollo's format, ending with an open assistant turn (`...\\nAssistant:`)."""
    return "".join(text for text, _ in apollo_segments(turns))


def chat_renderer(chat_format: str, tokenizer: Any = None) -> RenderTurns:
    """Turns -> prompt text in the model's chat format ("apollo" or the tokenizer's template)."""
    if chat_format == "apollo":
        return render_apollo
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise EvalError("chat_format 'template' needs a tokenizer with a chat_template")

    def render(turns: Sequence[str]) -> str:
        roles = ("user", "assistant")
        messages = [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return render
