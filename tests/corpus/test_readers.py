"""Readers on good and bad input: every bad row is named or rejected, none is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medbase_ray.corpus.languages import language_of_source, looks_like_language
from medbase_ray.corpus.readers import read_conversations, read_eval_items, read_raw_texts
from medbase_ray.corpus.records import CONVERSATION_SCHEMA, parse_options
from medbase_ray.corpus.rejects import CorpusError, RejectSink


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_apollo_conversations_and_texts(tmp_path: Path) -> None:
    write(tmp_path / "medicalBook_zh_qa.json", [["问题", "回答"], ["q2", "a2", "q3", "a3"]])
    write(tmp_path / "medicalBook_zh_text.json", ["一段医学文本。"])
    convs, counts = read_conversations(tmp_path)
    assert (counts.read, counts.kept, counts.rejected) == (2, 2, 0)
    assert convs[0] == {
        "id": "medicalBook_zh_qa:0",
        "source": "medicalBook",
        "language": "zh",
        "turns": ["问题", "回答"],
    }
    texts, tcounts = read_raw_texts(tmp_path)
    assert tcounts.kept == 1 and texts[0]["text"] == "一段医学文本。"


BAD_CONVERSATIONS = [
    (["q"], "turns", "odd number"),
    (["q", ""], "turns[1]", "empty turn"),
    (["q", 3], "turns[1]", "expected a string"),
    ("not a list", "turns", "expected a list"),
    ([["nested"], "a"], "turns[0]", "expected a string"),
]


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_CONVERSATIONS)
def test_bad_conversation_raises_naming_file_row_field(tmp_path: Path, bad, field, reason) -> None:
    path = write(tmp_path / "wiki_en_qa.json", [["ok", "fine"], bad])
    with pytest.raises(CorpusError) as info:
        read_conversations(path)
    err = info.value
    assert (err.file, err.index, err.field) == (str(path), 1, field)
    assert reason in str(err) and "row 1" in str(err)


def test_bad_rows_rejected_with_reason_rest_kept(tmp_path: Path) -> None:
    rows = [["ok", "fine"]] + [bad for bad, _, _ in BAD_CONVERSATIONS]
    write(tmp_path / "wiki_en_qa.json", rows)
    rejects_file = tmp_path / "rejects" / "rejects.jsonl"
    sink = RejectSink(rejects_file)
    convs, counts = read_conversations(tmp_path, on_error="reject", rejects=sink)
    assert len(convs) == 1 and counts.kept == 1
    assert counts.rejected == len(BAD_CONVERSATIONS)
    assert counts.read == counts.kept + counts.rejected
    written = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    assert [r["index"] for r in written] == [1, 2, 3, 4, 5]
    assert [r["field"] for r in written] == [f for _, f, _ in BAD_CONVERSATIONS]


def test_broken_json_and_invalid_utf8(tmp_path: Path) -> None:
    broken = tmp_path / "wiki_en_qa.json"
    broken.write_text('[["q", "a"], ["q2"', encoding="utf-8")
    # Read incrementally: the items before the break are read, the break is named.
    with pytest.raises(CorpusError, match=r"row 1, field '<file>': invalid JSON after item 0"):
        read_conversations(broken)
    latin = tmp_path / "wiki_fr_qa.json"
    latin.write_bytes('[["caf\xe9", "ok"]]'.encode("latin-1"))
    with pytest.raises(CorpusError, match="invalid UTF-8 before the first item"):
        read_conversations(latin)
    sink = RejectSink()
    _, counts = read_conversations(tmp_path, on_error="reject", rejects=sink)
    assert counts.rejected == 2 and counts.kept == 1  # ["q", "a"] came before the break
    assert {Path(r.file).name for r in sink.rows} == {"wiki_en_qa.json", "wiki_fr_qa.json"}


def test_wrong_nesting_and_bad_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "wiki_en_qa.json", {"q": "a"})
    with pytest.raises(CorpusError, match="expected a JSON list"):
        read_conversations(path)
    odd = write(tmp_path / "noLanguage.json", [["q", "a"]])
    with pytest.raises(CorpusError, match=r"row 0, field 'language': the language cannot be"):
        read_conversations(odd)


def test_jsonl_and_parquet_conversations(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"id": "a", "source": "s", "language": "es", "turns": ["p", "r"]}),
        "{broken",
        json.dumps({"source": "s", "language": "xx", "turns": ["p", "r"]}),
        json.dumps({"source": "s", "language": "fr"}),
    ]
    jsonl.write_text("\n".join(lines) + "\n")
    sink = RejectSink()
    convs, counts = read_conversations(jsonl, on_error="reject", rejects=sink)
    assert [c["id"] for c in convs] == ["a"]
    assert (counts.read, counts.kept, counts.rejected) == (4, 1, 3)
    assert [(r.index, r.field) for r in sink.rows] == [(1, "<line>"), (2, "language"), (3, "turns")]

    table = pa.Table.from_pylist(
        [{"id": "x", "source": "s", "language": "ar", "turns": ["سؤال", "جواب"]}],
        schema=CONVERSATION_SCHEMA,
    )
    pq.write_table(table, tmp_path / "c.parquet")
    convs, counts = read_conversations(tmp_path / "c.parquet")
    assert convs[0]["turns"] == ["سؤال", "جواب"] and counts.kept == 1


def test_eval_items_language_from_source(tmp_path: Path) -> None:
    items = [
        {"question": "q", "options": "(A) x\n(B) y", "answer": "(B)", "source": "headqa"},
        {"question": "q", "options": "(A) x\n(B) y", "answer": "(C)", "source": "headqa"},
        {"question": "q", "options": "(A) x\n(B) y", "source": "cmexam"},
        {"question": "q", "options": "", "answer": "(A)", "source": "cmexam"},
        {"question": "q", "options": "(A) x\n(B) y", "answer": "A", "source": "private-set"},
    ]
    path = write(tmp_path / "test.json", items)
    with pytest.raises(
        CorpusError, match=r"row 1, field 'answer': \(C\) is not one of the options"
    ):
        read_eval_items(path)
    sink = RejectSink()
    got, counts = read_eval_items(path, on_error="reject", rejects=sink)
    assert [(g["language"], g["answer"]) for g in got] == [("es", "B")]
    assert [(r.index, r.field) for r in sink.rows] == [
        (1, "answer"),
        (2, "answer"),
        (3, "options"),
        (4, "source"),
    ]
    got, _ = read_eval_items(path, on_error="reject", source_languages={"private-set": "hi"})
    assert got[-1]["language"] == "hi"


def test_language_registry_maps_all_xmedbench_sources() -> None:
    expected = {
        "medqa-usmle": "en", "medmcqa": "en", "pubmedqa": "en", "mmlu-medical": "en",
        "medqa-mcmle": "zh", "cmb-single": "zh", "cmexam": "zh", "cmmlu-medical": "zh",
        "headqa": "es", "frenchmedmcqa": "fr", "mmlu-medical-ar": "ar", "mmlu-medical-hi": "hi",
    }  # fmt: skip
    assert {s: language_of_source(s) for s in expected} == expected
    assert language_of_source("unknown") is None


def test_script_check() -> None:
    assert looks_like_language("高血压是常见病", "zh")
    assert not looks_like_language("hypertension is common", "zh")
    assert looks_like_language("ارتفاع ضغط الدم", "ar")
    assert looks_like_language("उच्च रक्तचाप", "hi")
    assert looks_like_language("la hipertensión arterial", "es")
    assert not looks_like_language("高血压", "fr")


def test_parse_options_multiline() -> None:
    assert parse_options("(A) one\n(B) two\ncontinued") == {"A": "one", "B": "two\ncontinued"}
    with pytest.raises(ValueError, match="appears twice"):
        parse_options("(A) x\n(A) y")
