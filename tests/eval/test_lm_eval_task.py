"""The lm-eval task over medbase's prompts: where its context ends, what its files say."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from medbase_ray.eval.lm_eval_task import TASK, token_boundary, write_task
from medbase_ray.models.loading import load_tokenizer


def test_the_boundary_moves_back_only_where_the_letter_merges_with_the_bracket(
    tiny_dir: Path,
) -> None:
    tokenizer = load_tokenizer(str(tiny_dir))
    en = "User:Which drug?\nAssistant:The correct answer is ("
    zh = "User:哪种药？\nAssistant:正确答案是("
    assert token_boundary(en, "ABCD", tokenizer) == len(en)  # "(" "A": a clean split
    split = token_boundary(zh, "ABCD", tokenizer)  # "是" "(A": the letter's token has "("
    assert split == len(zh) - 1
    ids = tokenizer(zh + "A")["input_ids"]
    assert tokenizer(zh[:split])["input_ids"] == ids[:-1]  # lm-eval scores the last token


def test_write_task_writes_the_yaml_over_the_documents(tmp_path: Path) -> None:
    docs = [{"id": "x", "prompt": "p", "choices": ["A", "B"], "target": 1, "letters": ["A", "B"]}]
    task_dir = write_task(docs, tmp_path / "tasks")
    spec = yaml.safe_load((task_dir / f"{TASK}.yaml").read_text())
    assert spec["task"] == TASK and spec["target_delimiter"] == ""
    data = Path(spec["dataset_kwargs"]["data_files"]["test"])
    assert [json.loads(line) for line in data.read_text().splitlines()] == docs
