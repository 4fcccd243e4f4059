"""Apollo's own files as they are (issue 18): the ApolloCorpus archive layout, the merged
mixTrain.json, raw-text JSONL of one-element lists, XMedBench's multi-answer, 5/6-option
and PubMedQA items; source and language from the stem, the folders or the user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medbase_ray.corpus.readers import read_conversations, read_eval_items, read_raw_texts
from medbase_ray.corpus.rejects import CorpusError, RejectSink


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_archive_layout_and_the_merged_file_read_alike(tmp_path: Path) -> None:
    qa = [["What lowers fever?", "Paracetamol."], ["q2", "a2"]]
    dialogue = [["医生你好", "你好", "我发烧了", "多喝水"]]
    texts = ["A passage about fever.", "Another passage."]
    archive = tmp_path / "ApolloCorpus" / "train"
    write(archive / "pretrain" / "medicalBook_en_qa.json", qa)
    write(archive / "pretrain" / "medicalBook_en_text.json", texts)
    write(archive / "sft" / "patient_zh_dialogue.json", dialogue)
    merged = write(
        tmp_path / "merged" / "mixTrain.json",
        {"medicalBook_en_qa": qa, "patient_zh_dialogue": dialogue, "medicalBook_en_text": texts},
    )

    from_archive, counts = read_conversations(tmp_path / "ApolloCorpus")
    from_merged, merged_counts = read_conversations(merged)
    assert from_archive == from_merged  # same ids, sources, languages, turns
    assert (counts.read, counts.kept) == (merged_counts.read, merged_counts.kept) == (3, 3)
    assert {(c["id"], c["source"], c["language"]) for c in from_merged} == {
        ("medicalBook_en_qa:0", "medicalBook", "en"),
        ("medicalBook_en_qa:1", "medicalBook", "en"),
        ("patient_zh_dialogue:0", "patient", "zh"),
    }
    # the text member of the merged file is raw text for rewrite
    merged_texts, _ = read_raw_texts(merged)
    assert [t["text"] for t in merged_texts] == texts


def test_merged_members_with_an_unknown_stem_or_shape(tmp_path: Path) -> None:
    merged = write(tmp_path / "mixTrain.json", {"notes": [["q", "a"]], "exam_fr_qa": [["q", "r"]]})
    sink = RejectSink()
    convs, counts = read_conversations(merged, on_error="reject", rejects=sink)
    assert [c["id"] for c in convs] == ["exam_fr_qa:0"]
    assert (counts.read, counts.kept, counts.rejected) == (2, 1, 1)
    (rej,) = sink.rows
    assert (rej.index, rej.field) == (0, "notes:language") and "--language" in rej.reason
    # the user's language (and source) fills what the member's name lacks
    convs, _ = read_conversations(merged, language="es", source="notes")
    assert convs[0]["language"] == "es" and convs[0]["source"] == "notes"

    write(tmp_path / "bad" / "mixTrain.json", {"exam_fr_qa": {"q": "r"}})
    with pytest.raises(CorpusError, match="member 'exam_fr_qa': expected a JSON list"):
        read_conversations(tmp_path / "bad" / "mixTrain.json")


def test_jsonl_of_one_element_lists_takes_language_from_folder_or_user(tmp_path: Path) -> None:
    lines = [json.dumps(["A passage on asthma."]), json.dumps(["Another on diabetes."])]
    in_folder = write_lines(tmp_path / "guidelines_en" / "data" / "1.dev.jsonl", lines)
    texts, counts = read_raw_texts(in_folder)
    assert counts.kept == 2 and counts.rejected == 0
    assert texts[0] == {
        "id": "guidelines_en/1.dev:0",
        "source": "guidelines",
        "language": "en",
        "text": "A passage on asthma.",
    }

    bare = write_lines(tmp_path / "plain" / "1.dev.jsonl", lines)
    sink = RejectSink()
    texts, counts = read_raw_texts(bare, on_error="reject", rejects=sink)
    assert texts == [] and (counts.read, counts.rejected) == (2, 2)
    assert all(r.field == "language" and "--language" in r.reason for r in sink.rows)
    with pytest.raises(CorpusError, match=r"1.dev.jsonl, row 0, field 'language'"):
        read_raw_texts(bare)
    texts, _ = read_raw_texts(bare, source="guidelines", language="fr")
    assert {(t["source"], t["language"]) for t in texts} == {("guidelines", "fr")}


def test_jsonl_lines_of_no_known_shape_are_rejected_with_the_reason(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "wiki_en" / "texts.jsonl",
        [
            json.dumps(["ok passage"]),
            "42",
            json.dumps(["two", "elements"]),
            json.dumps([""]),
            json.dumps({"text": "an object row", "source": "wiki"}),
        ],
    )
    sink = RejectSink()
    texts, counts = read_raw_texts(path, on_error="reject", rejects=sink)
    assert [t["text"] for t in texts] == ["ok passage", "an object row"]
    assert counts.read == counts.kept + counts.rejected == 5
    assert [(r.index, r.field) for r in sink.rows] == [(1, "<line>"), (2, "text"), (3, "text")]
    assert "expected an object or a one-element list, got int" in sink.rows[0].reason


def item(answer, options="(A) a\n(B) b\n(C) c\n(D) d", **extra) -> dict:
    return {"question": "q?", "options": options, "answer": answer, "source": "cmexam", **extra}


def test_xmedbench_items_all_load_with_every_answer_letter(tmp_path: Path) -> None:
    five = "(A) a\n(B) b\n(C) c\n(D) d\n(E) e"
    six = five + "\n(F) f"
    items = [
        item("(BCDE)", five),
        item("(AC)"),
        item("(E)", five),
        item("(F)", six),
        item("(A)", "(A) yes\n(B) no\n(C) maybe", source="pubmedqa", context="Trial data."),
        item(
            "(B)", "(A) yes\n(B) no\n(C) maybe", source="pubmedqa", context=["Part 1.", "Part 2."]
        ),
    ]
    got, counts = read_eval_items(write(tmp_path / "test.json", items))
    assert counts.read == counts.kept == len(items) and counts.rejected == 0
    assert [g["answer"] for g in got] == ["BCDE", "AC", "E", "F", "A", "B"]
    assert [g["language"] for g in got] == ["zh"] * 4 + ["en"] * 2
    assert got[4]["context"] == "Trial data." and got[5]["context"] == "Part 1.\nPart 2."


@pytest.mark.parametrize(
    ("bad", "field", "reason"),
    [
        ({"question": "q", "options": "(A) a\n(B) b", "source": "cmexam"}, "answer", "missing"),
        (item("(AG)"), "answer", "(G) is not one of the options (A, B, C, D)"),
        (item("(XY)"), "answer", "(X), (Y) are not one of the options"),
        (item("(A)", options=""), "options", "expected a non-empty string"),
        (item(""), "answer", "not one or more option letters"),
    ],
)
def test_bad_xmedbench_items_name_file_row_and_field(tmp_path: Path, bad, field, reason) -> None:
    path = write(tmp_path / "test.json", [item("(A)"), bad])
    with pytest.raises(CorpusError) as info:
        read_eval_items(path)
    assert (info.value.file, info.value.index, info.value.field) == (str(path), 1, field)
    assert reason in info.value.reason
    got, counts = read_eval_items(path, on_error="reject")
    assert len(got) == 1 and counts.read == counts.kept + counts.rejected == 2
