"""Pure parsing, validation and item bookkeeping of the rewrite stage (no Ray, no HTTP)."""

from __future__ import annotations

import pytest

from medbase_ray.rewrite.estimate import approx_tokens
from medbase_ray.rewrite.parsing import (
    Rejected,
    check_turns,
    chrf,
    format_conversation,
    parse_conversation,
    parse_dialogue,
    parse_single,
)
from medbase_ray.rewrite.store import task_of
from medbase_ray.rewrite.tasks import generate_items, item_id, translate_items


def test_dialogue_pairs_become_turns_in_order() -> None:
    text = (
        "Sure!\n<Patient>I have a headache.</Patient>\n<Doctor>How long?</Doctor>\n"
        "<Patient>Two days.</Patient> <Doctor>Rest and drink water.</Doctor>"
    )
    assert parse_dialogue(text) == [
        "I have a headache.",
        "How long?",
        "Two days.",
        "Rest and drink water.",
    ]


def test_dialogue_without_tags_is_unparsable_and_keeps_the_raw_answer() -> None:
    with pytest.raises(Rejected) as err:
        parse_dialogue("Patient: hi\nDoctor: hello")
    assert err.value.reason == "unparsable"
    assert err.value.raw == "Patient: hi\nDoctor: hello"


def test_dialogue_with_a_doctor_missing_is_unparsable() -> None:
    with pytest.raises(Rejected):
        parse_dialogue("<Patient>only a question</Patient>")


def test_conversation_round_trips_through_tags_with_newlines() -> None:
    turns = ["What is\nasthma?", "A chronic disease.", "Treatment?", "Inhalers."]
    assert parse_conversation(format_conversation(turns), 4) == turns


def test_conversation_with_turns_lost_is_unparsable() -> None:
    text = format_conversation(["a question", "an answer", "q2", "a2"])
    with pytest.raises(Rejected) as err:
        parse_conversation(text, 6)
    assert err.value.reason == "unparsable" and "expected 6 turns" in err.value.detail


def test_question_label_is_stripped_and_empty_is_rejected() -> None:
    assert parse_single("<question>: What lowers blood pressure?", "question") == (
        "What lowers blood pressure?"
    )
    with pytest.raises(Rejected) as err:
        parse_single("<reply>:   ", "answer")
    assert err.value.reason == "unparsable"


@pytest.mark.parametrize(
    ("turns", "language", "reason"),
    [
        (["ok question?", ""], "en", "unparsable"),
        (["q" * 50, "an answer"], "en", "too_long"),
        (["高血压怎么治疗？", "改变生活方式。"], "en", "wrong_language"),
        (["How is it treated?", "With drugs."], "zh", "wrong_language"),
        (["How is it treated?", "يعالج بالأدوية"], "en", "wrong_language"),
    ],
)
def test_turn_checks_name_the_reason(turns: list[str], language: str, reason: str) -> None:
    with pytest.raises(Rejected) as err:
        check_turns(turns, language, min_turn_chars=2, max_turn_chars=40)
    assert err.value.reason == reason


def test_turn_checks_pass_good_turns_in_each_script() -> None:
    for language, turns in {
        "en": ["How is it treated?", "With drugs."],
        "zh": ["高血压怎么治疗？", "改变生活方式。"],
        "ar": ["كيف يعالج؟", "بالأدوية."],
        "hi": ["इसका इलाज कैसे होता है?", "दवाओं से।"],
    }.items():
        assert check_turns(turns, language, 2, 100) == turns


def test_chrf_separates_a_faithful_round_trip_from_a_drifted_one() -> None:
    original = ["How is hypertension treated?", "With lifestyle changes and drugs."]
    assert chrf(original, original) == pytest.approx(100.0)
    close = ["How is hypertension treated?", "With changes of lifestyle and drugs."]
    assert chrf(close, original) > 60
    assert chrf(["zq xv wk", "jj pf qq"], original) < 10


def test_item_ids_are_deterministic_and_distinct_per_task_and_target() -> None:
    records = [{"id": "book_en_text:0", "source": "book", "language": "en", "text": "t"}]
    first, second = (
        generate_items(records, ["qa", "dialogue"]),
        generate_items(records, ["qa", "dialogue"]),
    )
    assert first == second
    assert [i["id"] for i in first] == ["book_en_text:0#qa", "book_en_text:0#dialogue"]
    convs = [{"id": "c#qa", "source": "s", "language": "en", "turns": ["q", "a"]}]
    items = translate_items(convs, ["en", "zh", "fr"])
    # no translation into the conversation's own language
    assert [i["id"] for i in items] == ["c#qa#translate-zh", "c#qa#translate-fr"]
    assert items[0]["language"] == "zh" and items[0]["source_language"] == "en"
    assert item_id("x", "translate", "zh") == "x#translate-zh"
    assert [task_of(i["id"]) for i in first + items] == ["qa", "dialogue", "translate", "translate"]


def test_approx_tokens_counts_ascii_by_four_and_other_letters_by_one() -> None:
    assert approx_tokens("abcd" * 10) == 10
    assert approx_tokens("abcde") == 2
    assert approx_tokens("高血压") == 3
    assert approx_tokens("") == 0
