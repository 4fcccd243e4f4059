"""The benchmark n-gram index (pure core, no Ray): what is found and what is not."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from medbase_ray.clean.index import build_index
from medbase_ray.clean.text import CHARS, WORDS, gram_hashes, normalize, tokens
from medbase_ray.corpus.readers import read_conversations, read_eval_items, sample_dir


@pytest.fixture(scope="module")
def items():
    found, _ = read_eval_items(sample_dir() / "xmedbench")
    return found


@pytest.fixture(scope="module")
def index(items):
    return build_index(items)


def _ids(index, texts, languages):
    return [[m.item_id for m in ms] for ms in index.find(texts, languages)]


def test_every_planted_question_is_found_as_written_recased_and_repunctuated(index, items):
    questions = [it["question"] for it in items]
    langs = [it["language"] for it in items]
    # "Which of ... adults?" -> "«WHICH - OF ... ADULTS»!!"
    repunct = [f"«{re.sub(' ', ' - ', q, count=3).rstrip('?？')}»!!" for q in questions]
    for variant in (questions, [q.upper() for q in questions], repunct):
        found = _ids(index, [f"Q: {v}\nA: yes." for v in variant], langs)
        missed = [it["id"] for it, ids in zip(items, found, strict=True) if it["id"] not in ids]
        assert not missed, f"{len(missed)} planted items not found, e.g. {missed[:3]}"


def test_chinese_question_found_inside_chinese_text_without_spaces(index, items):
    zh = [it for it in items if it["language"] == "zh"]
    assert len(zh) > 50
    texts = [f"病人问医生说{it['question'].rstrip('？')}医生回答说这要看具体情况" for it in zh]
    found = _ids(index, texts, ["zh"] * len(zh))
    assert all(it["id"] in ids for it, ids in zip(zh, found, strict=True))
    # Labelled English but written without spaces: characters too.
    (match,) = index.find([texts[0]], ["en"])[0][:1]
    assert match.item_id == zh[0]["id"] and match.field == "question"


def test_question_embedded_in_a_long_answer_is_found_with_item_field_and_ngram(index, items):
    item = next(it for it in items if it["language"] == "en" and len(it["question"].split()) > 13)
    filler = " ".join(["The patient was reviewed on the ward and the plan was discussed."] * 30)
    answer = f"{filler} As the exam asked: {item['question']} {filler}"
    matches = index.find(["What happened?\n" + answer], ["en"])[0]
    assert matches and {m.item_id for m in matches} == {item["id"]}
    first = matches[0]
    assert first.field == "question"
    assert len(first.ngram.split()) == 13 and first.ngram in normalize(item["question"])


def test_options_and_context_are_indexed_too(items):
    item = dict(items[0], id="ctx-1", language="en")
    item["context"] = (
        "A 45 year old farmer presents with fever night sweats and weight loss after a trip"
    )
    index = build_index([item])
    hits = index.find([f"Story: {item['context'].lower()} today."], ["en"])[0]
    assert hits and hits[0].field == "context"


def test_paraphrases_below_n_are_not_found(index, items):
    en = [it for it in items if it["language"] in ("en", "es", "fr")]
    # Every 6th word changed: no run of 8 words (the shortest gram) survives.
    texts = [
        " ".join("thing" if i % 6 == 5 else w for i, w in enumerate(it["question"].split()))
        for it in en
    ]
    assert _ids(index, texts, [it["language"] for it in en]) == [[] for _ in en]


def test_bundled_sft_data_states_the_facts_but_shares_no_gram_at_the_defaults(index):
    records, _ = read_conversations(sample_dir() / "apollo")
    texts = ["\n".join(r["turns"]) for r in records]
    found = index.find(texts, [r["language"] for r in records])
    assert len(records) == 1314 and sum(map(bool, found)) == 0
    # ... while a shorter n would flag some: the default n is what keeps them.
    short = build_index(read_eval_items(sample_dir() / "xmedbench")[0], 10, 6, 12, 8)
    assert sum(map(bool, short.find(texts, [r["language"] for r in records]))) > 0


def test_short_fields_are_matched_whole_and_tiny_ones_not_at_all(items):
    item = {
        "id": "x",
        "language": "en",
        "question": "Which gland makes insulin in adults?",
        "options": "(A) Pancreas\n(B) Liver",
    }
    index = build_index([item])
    assert index.lengths[WORDS] == [6] or index.lengths[WORDS] == []
    # 6 words < min_words (8): too short to index, so "Pancreas" flags nothing either.
    assert index.n_grams == 0
    item["question"] = "Which gland of the body makes insulin in healthy adults?"  # 10 words
    index = build_index([item])
    assert index.lengths[WORDS] == [10]
    assert index.find(["so: which gland of the body makes insulin in healthy adults"], ["en"])[0]
    assert not index.find(["which gland of the body makes insulin in adults"], ["en"])[0]


def test_tokens_words_and_chars():
    assert tokens(normalize("Ｈｅｌｌｏ, WORLD!  «Straße»"), by_chars=False) == [
        "hello",
        "world",
        "strasse",
    ]
    assert tokens(normalize("坏血病，是由 维生素C 缺乏引起的。"), by_chars=True) == list(
        "坏血病是由维生素c缺乏引起的"
    )
    # Hindi vowel signs are marks, not punctuation: the word stays whole.
    assert tokens(normalize("विटामिन सी की कमी"), by_chars=False) == ["विटामिन", "सी", "की", "कमी"]


def test_gram_hashes_are_the_same_in_every_process():
    code = (
        "import numpy as np; from medbase_ray.clean.text import gram_hashes;"
        "h,_,_=gram_hashes(np.arange(1,30,dtype=np.uint64),np.array([0,10,29]),[3,13],1);"
        "print(int(h.sum(dtype=np.uint64)))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1


def test_gram_hashes_stay_inside_each_sequence():
    import numpy as np

    ids = np.arange(1, 11, dtype=np.uint64)
    h, seq, pos = gram_hashes(ids, np.array([0, 4, 10]), [3], CHARS)
    assert seq.tolist() == [0, 0, 1, 1, 1, 1] and pos.tolist() == [0, 1, 0, 1, 2, 3]
    # The same gram at another place hashes the same.
    h2, _, _ = gram_hashes(np.array([9, 1, 2, 3], np.uint64), np.array([0, 4]), [3], CHARS)
    assert h2[1] == h[0]
