"""The bundled sample corpus and benchmark: formats, sizes, and that tests are learnable."""

from __future__ import annotations

from collections import Counter

from medbase_ray.corpus.languages import LANGUAGES
from medbase_ray.corpus.readers import (
    read_conversations,
    read_eval_items,
    read_raw_texts,
    sample_dir,
)
from medbase_ray.corpus.records import parse_options


def test_raw_texts_every_language() -> None:
    texts, counts = read_raw_texts(sample_dir() / "apollo")
    assert counts.rejected == 0
    per_lang = Counter(t["language"] for t in texts)
    assert set(per_lang) == set(LANGUAGES)
    assert min(per_lang.values()) >= 30


def test_sft_conversations_every_language() -> None:
    convs, counts = read_conversations(sample_dir() / "apollo")
    assert counts.rejected == 0
    qa = Counter(c["language"] for c in convs if len(c["turns"]) == 2)
    dialogues = Counter(c["language"] for c in convs if len(c["turns"]) >= 4)
    assert set(qa) == set(LANGUAGES) and min(qa.values()) >= 150
    assert set(dialogues) == set(LANGUAGES) and min(dialogues.values()) >= 3


def test_benchmark_splits_every_language() -> None:
    bench = sample_dir() / "xmedbench"
    test, tc = read_eval_items(bench / "test.json")
    dev, dc = read_eval_items(bench / "dev.json")
    assert tc.rejected == 0 and dc.rejected == 0
    assert min(Counter(i["language"] for i in test).values()) >= 40
    assert min(Counter(i["language"] for i in dev).values()) >= 10
    assert set(Counter(i["language"] for i in test)) == set(LANGUAGES)
    for item in test + dev:
        assert 4 <= len(parse_options(item["options"])) <= 5
    assert not {i["question"] for i in test} & {i["question"] for i in dev}


def test_every_test_answer_is_stated_in_the_sft_data() -> None:
    """The claim the README makes: a model trained on the SFT data can learn each answer."""
    convs, _ = read_conversations(sample_dir() / "apollo")
    answers_by_lang: dict[str, str] = {}
    for c in convs:
        answers_by_lang[c["language"]] = answers_by_lang.get(c["language"], "") + "\n".join(
            c["turns"][1::2]
        )
    questions = {t for c in convs for t in c["turns"][0::2]}
    test, _ = read_eval_items(sample_dir() / "xmedbench" / "test.json")
    for item in test:
        correct = parse_options(item["options"])[item["answer"]]
        assert correct in answers_by_lang[item["language"]], item
        assert item["question"] not in questions, item
