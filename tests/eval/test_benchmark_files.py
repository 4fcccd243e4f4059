"""Bad benchmark files give clear errors naming the file, the item and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from medbase_ray.corpus.rejects import CorpusError
from medbase_ray.eval.config import EvalConfig
from medbase_ray.eval.prompts import EvalError
from medbase_ray.eval.runner import load_benchmark

from .conftest import DEV_ITEMS, TEST_ITEMS, write_json


def load(path: Path, **kw):
    return load_benchmark(EvalConfig(benchmark=str(path), **{"k_shot": 0, **kw}))


def with_item(tmp_path: Path, index: int, item: dict) -> Path:
    items = [dict(i) for i in TEST_ITEMS]
    items[index] = item
    return write_json(tmp_path / "test.json", items)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"answer": None}, "answer", "missing"),
        ({"answer": "(E)"}, "answer", r"\(E\) is not one of the options \(A, B, C, D\)"),
        ({"options": ""}, "options", "non-empty"),
        ({"options": "(A) only one"}, "options", "at least 2 options"),
        ({"options": "A. Liver\nB. Pancreas"}, "options", "does not start with"),
        ({"question": "  "}, "question", "non-empty"),
    ],
)
def test_bad_item_names_file_row_and_field(tmp_path: Path, change, field, reason) -> None:
    item = {**TEST_ITEMS[3], **change}
    if change.get("answer", "") is None:
        del item["answer"]
    path = with_item(tmp_path, 3, item)
    with pytest.raises(CorpusError, match=rf"test\.json, row 3, field '{field}': .*{reason}"):
        load(path)


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    items = [{**item, "id": f"q{i}"} for i, item in enumerate(TEST_ITEMS)]
    items[5]["id"] = "q1"
    path = write_json(tmp_path / "test.json", items)
    with pytest.raises(CorpusError, match=r"row 5, field 'id': duplicate id 'q1' \(item 1\)"):
        load(path)


def test_unknown_source_needs_a_language(tmp_path: Path) -> None:
    path = with_item(tmp_path, 2, {**TEST_ITEMS[2], "source": "my-exam"})
    with pytest.raises(CorpusError, match="row 2, field 'source': unknown source 'my-exam'"):
        load(path)
    items, _, _, _ = load(path, source_languages={"my-exam": "fr"})
    assert items[2]["language"] == "fr"
    with pytest.raises(EvalError, match="'de'"):
        load(path, source_languages={"my-exam": "de"})


def test_broken_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "test.json"
    path.write_text('[{"question": "x",', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"test\.json(, row \d+)?, field '<file>': invalid JSON"):
        load(path)


def test_splits_of_a_directory(bench_dir: Path) -> None:
    items, dev, test_path, dev_path = load(bench_dir, k_shot=3)
    assert len(items) == len(TEST_ITEMS) and len(dev) == len(DEV_ITEMS)
    assert test_path.name == "test.json" and dev_path.name == "dev.json"
    assert {i["answer"] for i in items} <= set("ABCDE")


def test_shots_need_a_dev_split_other_than_the_items(tmp_path: Path, bench_dir: Path) -> None:
    single = write_json(tmp_path / "only.json", TEST_ITEMS)
    with pytest.raises(EvalError, match="k_shot=3 needs a dev split"):
        load(single, k_shot=3)
    with pytest.raises(EvalError, match="another split"):
        load(single, k_shot=3, dev_benchmark=str(single))
    items, dev, _, _ = load(single, k_shot=3, dev_benchmark=str(bench_dir / "dev.json"))
    assert len(dev) == len(DEV_ITEMS)
    with pytest.raises(EvalError, match="no split 'valid'"):
        load(bench_dir, split="valid")
