"""The three scoring modes: one item in, one eval result out.

An item's `answer` holds every correct letter ("B", or "BCDE" for a multi-answer CMExam
item). By default a predicted letter is correct when it is one of them (a single
prediction cannot name several; the report counts such items per source so a reader
can discount them). With `apollo_compat` only the first letter counts, as Apollo's
`answer[1]` does, and generate mode extracts the letter with Apollo's rules verbatim.

An eval result is the eval item plus `prediction` (a letter, or None when generate mode
could not read one), `correct`, `scores` (letter -> log-prob; empty for generate), and
what explains it: `n_shots`, `prompt_tokens`, and `response` (generate) or
`prediction_norm` / `correct_norm` (cloze, length-normalised).
"""

from __future__ import annotations

from typing import Any

from medbase_ray.corpus.records import parse_options
from medbase_ray.eval.apollo import answer_key, extract_apollo_answer
from medbase_ray.eval.extract import extract_answer
from medbase_ray.eval.lm import LanguageModel
from medbase_ray.eval.prompts import Prompt


def argmax_letter(scores: dict[str, float]) -> str:
    """The best-scoring letter; ties go to the first letter."""
    return max(scores, key=lambda letter: scores[letter])


def is_correct(prediction: str | None, item: dict[str, Any], apollo_compat: bool = False) -> bool:
    if prediction is None:
        return False
    if apollo_compat:
        return prediction == answer_key(item)
    return prediction in item["answer"]


def result_row(
    item: dict[str, Any],
    prompt: Prompt,
    prediction: str | None,
    scores: dict[str, float],
    apollo_compat: bool = False,
) -> dict[str, Any]:
    return {
        **item,
        "prediction": prediction,
        "correct": is_correct(prediction, item, apollo_compat),
        "scores": scores,
        "n_shots": prompt.n_shots,
        "prompt_tokens": prompt.n_tokens,
    }


def option_requests(prompt: Prompt) -> tuple[str, list[str]]:
    """(context, the continuations in letter order): what a backend scores for an item."""
    if not prompt.continuations:
        raise ValueError("this prompt was built for generate mode: it has no continuations")
    return prompt.context, list(prompt.continuations.values())


def row_from_logprobs(
    item: dict[str, Any], prompt: Prompt, mode: str, logprobs: list[float]
) -> dict[str, Any]:
    """The result row of a loglikelihood or cloze item from its options' log-probs (in
    the letter order of `option_requests`): the argmax letter.

    loglikelihood: log P(letter | prompt + "The correct answer is ("). cloze: log P(option
    text | question), and also the argmax of the length-normalised score (divided by the
    option's length in characters, lm-evaluation-harness's `acc_norm`), so long options
    are not penalised for length."""
    assert prompt.continuations is not None
    if mode not in ("loglikelihood", "cloze"):
        raise ValueError(f"mode {mode!r} is not scored by log-probs")
    scores = dict(zip(prompt.continuations, logprobs, strict=True))
    row = result_row(item, prompt, argmax_letter(scores), scores)
    if mode == "cloze":
        normalised = {
            letter: lp / max(len(prompt.continuations[letter]), 1) for letter, lp in scores.items()
        }
        row["prediction_norm"] = argmax_letter(normalised)
        row["correct_norm"] = is_correct(row["prediction_norm"], item)
    return row


async def score_generate(
    lm: LanguageModel,
    item: dict[str, Any],
    prompt: Prompt,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    apollo_compat: bool = False,
) -> dict[str, Any]:
    """Greedy generation, then the answer extraction (Apollo's own with apollo_compat)."""
    response = await lm.generate(prompt.context, max_new_tokens, min_new_tokens)
    if apollo_compat:
        prediction = extract_apollo_answer(response)
    else:
        prediction = extract_answer(response, item["language"], parse_options(item["options"]))
    row = result_row(item, prompt, prediction, {}, apollo_compat)
    row["response"] = response
    return row


async def score_item(
    lm: LanguageModel,
    item: dict[str, Any],
    prompt: Prompt,
    mode: str,
    max_new_tokens: int = 128,
    min_new_tokens: int = 0,
    apollo_compat: bool = False,
) -> dict[str, Any]:
    if mode == "generate":
        return await score_generate(lm, item, prompt, max_new_tokens, min_new_tokens, apollo_compat)
    if mode not in ("loglikelihood", "cloze"):
        raise ValueError(f"unknown scoring mode {mode!r}")
    logprobs = await lm.continuation_logprobs(*option_requests(prompt))
    return row_from_logprobs(item, prompt, mode, logprobs)
