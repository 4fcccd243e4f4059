"""The three scoring modes: one item in, one eval result out.

An eval result is the eval item plus `prediction` (a letter, or None when generate mode
could not read one), `correct`, `scores` (letter -> log-prob; empty for generate), and
what explains it: `n_shots`, `prompt_tokens`, and `response` (generate) or
`prediction_norm` / `correct_norm` (cloze, length-normalised).
"""

from __future__ import annotations

from typing import Any

from medbase_ray.corpus.records import parse_options
from medbase_ray.eval.extract import extract_answer
from medbase_ray.eval.lm import LanguageModel
from medbase_ray.eval.prompts import Prompt


def argmax_letter(scores: dict[str, float]) -> str:
    """The best-scoring letter; ties go to the first letter."""
    return max(scores, key=lambda letter: scores[letter])


def result_row(
    item: dict[str, Any], prompt: Prompt, prediction: str | None, scores: dict[str, float]
) -> dict[str, Any]:
    return {
        **item,
        "prediction": prediction,
        "correct": prediction == item["answer"],
        "scores": scores,
        "n_shots": prompt.n_shots,
        "prompt_tokens": prompt.n_tokens,
    }


async def _option_scores(lm: LanguageModel, prompt: Prompt) -> dict[str, float]:
    if not prompt.continuations:
        raise ValueError("this prompt was built for generate mode: it has no continuations")
    letters = list(prompt.continuations)
    logprobs = await lm.continuation_logprobs(
        prompt.context, [prompt.continuations[letter] for letter in letters]
    )
    return dict(zip(letters, logprobs, strict=True))


async def score_loglikelihood(
    lm: LanguageModel, item: dict[str, Any], prompt: Prompt
) -> dict[str, Any]:
    """log P(letter | prompt + "The correct answer is (") for each option; argmax."""
    scores = await _option_scores(lm, prompt)
    return result_row(item, prompt, argmax_letter(scores), scores)


async def score_cloze(lm: LanguageModel, item: dict[str, Any], prompt: Prompt) -> dict[str, Any]:
    """log P(option text | question) for each option; argmax, raw and per character.

    The length-normalised score divides by the option's length in characters
    (lm-evaluation-harness's `acc_norm`), so long options are not penalised for length.
    """
    scores = await _option_scores(lm, prompt)
    assert prompt.continuations is not None
    normalised = {
        letter: lp / max(len(prompt.continuations[letter]), 1) for letter, lp in scores.items()
    }
    row = result_row(item, prompt, argmax_letter(scores), scores)
    row["prediction_norm"] = argmax_letter(normalised)
    row["correct_norm"] = row["prediction_norm"] == item["answer"]
    return row


async def score_generate(
    lm: LanguageModel,
    item: dict[str, Any],
    prompt: Prompt,
    max_new_tokens: int,
    min_new_tokens: int = 0,
) -> dict[str, Any]:
    """Greedy generation, then Apollo's answer extraction."""
    response = await lm.generate(prompt.context, max_new_tokens, min_new_tokens)
    options = parse_options(item["options"])
    row = result_row(item, prompt, extract_answer(response, item["language"], options), {})
    row["response"] = response
    return row


async def score_item(
    lm: LanguageModel,
    item: dict[str, Any],
    prompt: Prompt,
    mode: str,
    max_new_tokens: int = 128,
    min_new_tokens: int = 0,
) -> dict[str, Any]:
    if mode == "generate":
        return await score_generate(lm, item, prompt, max_new_tokens, min_new_tokens)
    if mode == "loglikelihood":
        return await score_loglikelihood(lm, item, prompt)
    if mode == "cloze":
        return await score_cloze(lm, item, prompt)
    raise ValueError(f"unknown scoring mode {mode!r}")
