"""Apollo's prompts per language, k-shot from the dev split, the prompt-length limit."""

from __future__ import annotations

import pytest

from medbase_ray.eval.prompts import (
    EvalError,
    build_prompt,
    chat_renderer,
    load_templates,
    render_apollo,
    select_shots,
)

from .conftest import DEV_ITEMS, TEST_ITEMS


def as_items(raw: list[dict], split: str) -> list[dict]:
    """The reader's form: id, language, bare answer letter."""
    from medbase_ray.corpus.languages import language_of_source

    return [
        {
            "id": f"{split}:{i}",
            "source": r["source"],
            "language": language_of_source(r["source"]),
            "question": r["question"],
            "options": r["options"],
            "answer": r["answer"].strip("()"),
            "context": r.get("context"),
        }
        for i, r in enumerate(raw)
    ]


ITEMS = as_items(TEST_ITEMS, "test")
DEV = as_items(DEV_ITEMS, "dev")
BY_LANG = {item["language"]: item for item in ITEMS}
PHRASES = {
    "en": "The correct answer is",
    "zh": "正确答案是",
    "es": "La respuesta correcta es",
    "fr": "La bonne réponse est",
    "hi": "सही उत्तर है",
    "ar": "الإجابة الصحيحة هي",
}


def prompt(item, mode="loglikelihood", k=1, limit=100_000, seed=0, dev=DEV):
    return build_prompt(
        item,
        dev,
        mode=mode,
        k_shot=k,
        max_prompt_tokens=limit,
        seed=seed,
        render=render_apollo,
        count_tokens=len,
    )


def test_english_prompt_is_apollos_exactly() -> None:
    """Apollo's question_prompt_en_choice_shot + question_prompt_en_choice."""
    item = ITEMS[0]
    shot = select_shots(item, DEV, 1, seed=0)[0]
    instruction = (
        "You are a medical doctor answering real-world medical exam questions. "
        "Select one correct answer from A to D."
    )
    expected = (
        f"User:{instruction}\nQuestion: {shot['question']}\nOptions:\n{shot['options']}\n"
        f"Assistant:The correct answer is ({shot['answer']}).<|endoftext|>\n"
        f"User:{instruction}\nQuestion: {item['question']}\nOptions:\n{item['options']}\n"
        "Assistant:"
    )
    assert prompt(item, mode="generate").context == expected


@pytest.mark.parametrize("language", list(PHRASES))
def test_each_language_has_its_prompt_and_answer_phrase(language: str) -> None:
    assert load_templates()[language].answer.startswith(PHRASES[language])
    item = BY_LANG[language]
    p = prompt(item, k=1)
    # loglikelihood: the answer phrase and "(" follow the prompt, letters are scored.
    assert p.context.endswith(PHRASES[language] + (" (" if language != "zh" else "("))
    assert p.continuations == {letter: letter for letter in "ABCDE"[: len(p.continuations)]}
    assert p.n_shots == 1
    # The shot answers with the same phrase, and the instruction is the language's own.
    template = load_templates()[language]
    assert f"{PHRASES[language]}" in p.context.split("<|endoftext|>")[0]
    assert template.question_label in p.context


def test_instruction_names_the_last_option_letter() -> None:
    five = ITEMS[1]  # options A-E
    assert "from A to E." in prompt(five, k=0).context  # Apollo always said D (eval/apollo.py)


def test_pubmedqa_context_and_instruction() -> None:
    item = next(i for i in ITEMS if i["source"] == "pubmedqa")
    p = prompt(item, mode="generate", k=0)
    assert f"\nContext: {item['context']} \nQuestion: {item['question']}" in p.context
    assert "Choose ‘maybe’ if the evidence" in p.context


def test_shots_are_seeded_from_dev_and_prefer_the_same_source() -> None:
    item = ITEMS[0]  # medqa-usmle; dev has 2 of it, 1 more en (mmlu-medical)
    shots = select_shots(item, DEV, 3, seed=0)
    assert shots == select_shots(item, DEV, 3, seed=0)
    assert {s["source"] for s in shots[:2]} == {"medqa-usmle"}
    assert shots[2]["source"] == "mmlu-medical"
    assert all(s["id"].startswith("dev:") for s in shots)
    orders = {tuple(s["id"] for s in select_shots(item, DEV, 2, seed=s)) for s in range(20)}
    assert len(orders) == 2  # both orders of the two same-source shots occur


def test_an_item_never_gets_itself_as_a_shot() -> None:
    item = ITEMS[0]
    leaked = [*DEV, {**item, "id": "dev:copy"}]
    for seed in range(10):
        assert all(s["question"] != item["question"] for s in select_shots(item, leaked, 3, seed))


def test_shots_are_dropped_to_fit_the_prompt_limit() -> None:
    item = ITEMS[0]
    full = prompt(item, k=2)
    one = prompt(item, k=1)
    assert full.n_shots == 2 and full.n_tokens == len(full.context) + 1
    limited = prompt(item, k=2, limit=full.n_tokens - 1)
    assert limited.n_shots == 1 and limited.context == one.context
    # Even zero shots do not fit: the zero-shot prompt is kept, and says how long it is.
    tiny = prompt(item, k=2, limit=16)
    assert tiny.n_shots == 0 and tiny.n_tokens > 16


def test_cloze_scores_the_option_texts_after_the_question() -> None:
    item = BY_LANG["fr"]
    p = prompt(item, mode="cloze", k=1)
    assert p.continuations == {"A": "Foie", "B": "Pancréas", "C": "Rein", "D": "Rate"}
    assert p.context.endswith(f"User:{item['question']}\nAssistant:")
    # The shot answers with its correct option's text.
    assert p.context.startswith(
        "User:Quelle vitamine prévient le scorbut ?\nAssistant:Vitamine C<|endoftext|>\n"
    )


def test_template_chat_format_agrees_with_apollo_for_the_embedded_tokenizer(tiny_dir) -> None:
    from medbase_ray.models.loading import load_tokenizer

    # The embedded tokenizer's chat_template is Apollo's format as Jinja.
    render = chat_renderer("template", load_tokenizer(str(tiny_dir)))
    for item in (ITEMS[0], BY_LANG["ar"]):
        turns_prompt = prompt(item, mode="generate", k=2)
        templated = build_prompt(
            item,
            DEV,
            mode="generate",
            k_shot=2,
            max_prompt_tokens=100_000,
            seed=0,
            render=render,
            count_tokens=len,
        )
        assert templated.context == turns_prompt.context
    with pytest.raises(EvalError, match="chat_template"):
        chat_renderer("template", None)


def test_unknown_language_is_an_error() -> None:
    with pytest.raises(EvalError, match="'de'.*source_languages"):
        prompt({**ITEMS[0], "language": "de"})
