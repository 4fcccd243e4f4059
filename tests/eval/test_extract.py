"""Answer extraction on hand-written answers, in all six languages."""

from __future__ import annotations

import pytest

from medbase_ray.eval.extract import extract_answer

ABCD = {"A": "Liver", "B": "Pancreas", "C": "Kidney", "D": "Spleen"}
YES_NO_MAYBE = {"A": "yes", "B": "no", "C": "maybe"}

CASES = [
    # English
    ("en", "The correct answer is (B).", "B"),
    ("en", "(b)", "B"),
    ("en", "Answer: D", "D"),
    ("en", "answer: C because the pancreas", "C"),
    ("en", "The answer is a hormone made in the islets.", None),  # "a" is no option
    ("en", "I do not know.", None),
    ("en", "Dopamine is not involved here", None),  # Apollo would read the D of "Dopamine"
    ("en", "\n\n  The correct answer is (C).\n(A) is wrong", "C"),  # first non-empty line
    ("en", "(A) or (B)? (B), since (B) secretes it", "B"),  # the most frequent
    ("en", "(A) or (B)", "A"),  # a tie: the first seen
    ("en", "B", "B"),
    # Chinese
    ("zh", "正确答案是（C）。", "C"),
    ("zh", "（C）", "C"),
    ("zh", "（Ｃ）胰腺", "C"),  # full-width letter too
    ("zh", "正确答案是B", "B"),
    ("zh", "答案：D", "D"),
    ("zh", "我不知道。", None),
    # Spanish
    ("es", "La respuesta correcta es (A).", "A"),
    ("es", "La respuesta correcta es C, el páncreas", "C"),
    ("es", "Respuesta: D", "D"),
    ("es", "No estoy seguro de la respuesta.", None),
    # French
    ("fr", "La bonne réponse est (D).", "D"),
    ("fr", "Réponse : B", "B"),
    ("fr", "La bonne réponse est C", "C"),
    ("fr", "Je ne sais pas.", None),
    # Arabic
    ("ar", "الإجابة الصحيحة هي (B).", "B"),
    ("ar", "الإجابة الصحيحة هي C", "C"),
    ("ar", "لا أعرف الإجابة", None),
    # Hindi
    ("hi", "सही उत्तर है (A)।", "A"),
    ("hi", "सही उत्तर है D", "D"),
    ("hi", "मुझे नहीं पता", None),
]


@pytest.mark.parametrize(("language", "text", "expected"), CASES)
def test_extract_answer(language: str, text: str, expected: str | None) -> None:
    assert extract_answer(text, language) == expected
    # Knowing the options changes nothing for these (all letters are A-D).
    assert extract_answer(text, language, ABCD) == expected


def test_english_answer_phrase_is_read_in_any_language() -> None:
    assert extract_answer("The correct answer is D", "zh") == "D"
    assert extract_answer("Answer: B", "hi") == "B"


def test_yes_no_follow_apollo_and_the_options() -> None:
    # Apollo: "Yes." -> A and "No." -> B (PubMedQA's yes/no/maybe options).
    assert extract_answer("Yes.", "en") == "A"
    assert extract_answer("No.", "en") == "B"
    # With the options known, the option whose text it is.
    assert extract_answer("Yes.", "en", YES_NO_MAYBE) == "A"
    assert extract_answer("maybe", "en", YES_NO_MAYBE) == "C"
    assert extract_answer("Yes.", "en", ABCD) is None
    assert extract_answer("Pancreas.", "en", ABCD) == "B"


def test_letters_outside_the_options_are_not_answers() -> None:
    assert extract_answer("(E)", "en", ABCD) is None
    assert extract_answer("(E)", "en") == "E"  # without options: A-F, as Apollo
    assert extract_answer("I think so", "en") is None  # "I" is not an option letter


def test_no_text() -> None:
    assert extract_answer("", "en") is None
    assert extract_answer("   \n  ", "fr") is None
    assert extract_answer(None, "es") is None
