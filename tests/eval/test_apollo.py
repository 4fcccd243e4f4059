"""eval.apollo_compat against Apollo's own code, transcribed line by line below.

The transcriptions are of FreedomIntelligence/Apollo src/evaluate/generate_score.py
(`extract_and_choose_answer`, the scoring loop) and
src/process/prepare/data_process_test_gemma.py (the prompt of one item, given its draw),
with only the file I/O, prints and the unseeded draw taken out.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path

import pytest

from medbase_ray.eval.apollo import (
    MAX_PROMPT_CHARS,
    answer_key,
    build_apollo_prompt,
    build_apollo_prompts,
    draw_shots,
    extract_apollo_answer,
)
from medbase_ray.eval.prompts import render_apollo
from medbase_ray.eval.report import build_report
from medbase_ray.eval.scoring import is_correct


# --- generate_score.py, line by line --------------------------------------------------
def apollo_extract_and_choose_answer(pattern, model_answer):
    if "\n" in model_answer:
        model_answer_split = model_answer.split("\n")
        for model_answer_i in model_answer_split:
            if len(model_answer_i):
                model_answer = model_answer_i
                break

    matches = re.findall(pattern, model_answer)
    option_count = {}
    for match in matches:
        option_count[match.upper()] = option_count.get(match.upper(), 0) + 1

    if not option_count:
        # else use loose pattern
        loose_pattern = r"[A-F]"
        if pattern == loose_pattern:
            if model_answer == "Yes.":
                return "A"
            elif model_answer == "No.":
                return "B"
            else:
                return None
        else:
            return apollo_extract_and_choose_answer(loose_pattern, model_answer)

    max_count = max(option_count.values())
    max_options = [option for option, count in option_count.items() if count == max_count]
    return max_options[0]


def apollo_generate_score(json_objects):
    all = defaultdict(int)  # noqa: A001 - Apollo's name
    right = defaultdict(int)
    accuracy_dict = defaultdict(int)
    for item in json_objects:
        source = item["source"]
        answer = item["model_answer"]
        all[source] += 1
        pattern = r"[（\(]([A-Fa-f])[）\)]"
        extract_answer = apollo_extract_and_choose_answer(pattern, answer)
        if item["answer"] == extract_answer:
            right[source] += 1
    for key in right:
        accuracy_dict[key] = right[key] / all[key]
    return accuracy_dict


# --- data_process_test_gemma.py's loop body for one item, its draw given ----------------
EN_SHOT = """User:You are a medical doctor answering real-world medical exam questions. Select one correct answer from A to D.
Question: {question}
Options:
{options}
Assistant:The correct answer is {answer}.<|endoftext|>
"""
EN_Q = """User:You are a medical doctor answering real-world medical exam questions. Select one correct answer from A to D.
Question: {question}
Options:
{options}
Assistant:"""
ZH_SHOT = """User:您是一名医生，正在回答现实世界的医学考试问题。请从A到D中选择一个正确答案。
问题: {question}
选项:
{options}
Assistant:正确答案是{answer}.<|endoftext|>
"""


def apollo_prompt(item, random_samples, few_shot_prompt, question_prompt):
    question = ""
    if item in random_samples:
        random_samples.remove(item)
    else:
        random_samples = random_samples[:-1]
    real_question = question_prompt.format(**item)
    real_question_len = len(real_question)
    for sample in random_samples:
        sample = few_shot_prompt.format(**sample)
        if len(question) + real_question_len + len(sample) < 4096:
            question += sample
    question += real_question
    if len(question) > 4096:
        return None
    return question


# --- model answers: what a model writes, the awkward cases included ---------------------
ANSWERS = [
    "The correct answer is (B).",
    "(b)",
    "（C）",
    "(A) or (B)? (B), since (B) secretes it",
    "(A) or (B)",
    "\n\nThe correct answer is (D).\n(A)",
    "  \nAnswer: C",  # a line of spaces is Apollo's first non-empty line
    "Answer: C",  # "A" of "Answer" and C tie: A is seen first
    "Dopamine is not involved",
    "Yes.",
    "No.",
    "yes.",
    "Maybe",
    "",
    "\n",
    "正确答案是B",
    "La respuesta correcta es (E).",
    "(f) is not an option",
    "C. Type (A) blood",
    "I do not know.",
    "BCDE",
]


def answer_rows() -> list[dict]:
    rows = []
    sources = ["medqa-usmle", "cmexam", "pubmedqa", "headqa"]
    truth = ["(B)", "(BCDE)", "(A)", "(C)", "(AC)"]
    for i, text in enumerate(ANSWERS * 2):
        rows.append(
            {
                "id": f"r{i}",
                "source": sources[i % len(sources)],
                "language": {"cmexam": "zh", "headqa": "es"}.get(sources[i % 4], "en"),
                "raw_answer": truth[i % len(truth)],
                "model_answer": text,
            }
        )
    return rows


def test_extraction_and_scores_agree_with_apollos_code_on_every_answer(tmp_path: Path) -> None:
    """A file of model answers, scored by the project in apollo_compat mode and by the
    transcription: every extracted letter, every verdict and every accuracy agree."""
    path = tmp_path / "model_ans.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in answer_rows()) + "\n")
    rows = [json.loads(line) for line in path.read_text().splitlines()]

    ours = []
    for row in rows:
        pattern = r"[（\(]([A-Fa-f])[）\)]"
        theirs = apollo_extract_and_choose_answer(pattern, row["model_answer"])
        mine = extract_apollo_answer(row["model_answer"])
        assert mine == theirs, row["model_answer"]
        item = {**row, "answer": row["raw_answer"].strip("()")}  # the reader keeps "BCDE"
        assert answer_key(item) == row["raw_answer"][1]
        verdict = is_correct(mine, item, apollo_compat=True)
        assert verdict == (row["raw_answer"][1] == theirs)
        ours.append({**item, "prediction": mine, "correct": verdict})

    apollo = apollo_generate_score([{**r, "answer": r["raw_answer"][1]} for r in rows])
    report = build_report(ours, 0, apollo_compat=True)["accuracy"]
    kept = {s: v["accuracy"] for s, v in report["sources"].items() if v["correct"] > 0}
    assert kept == pytest.approx(dict(apollo))
    assert set(report["dropped_zero_correct"]) == set(report["sources"]) - set(apollo)
    # The cases where the project's default extraction reads another letter on purpose.
    assert extract_apollo_answer("Dopamine is not involved") == "D"
    assert extract_apollo_answer("C. Type (A) blood") == "A"


def item(i: int, source: str, question: str, answer: str = "B", context=None) -> dict:
    return {
        "id": f"{source}:{i}",
        "source": source,
        "language": "zh" if source == "cmexam" else "en",
        "question": question,
        "options": "(A) one\n(B) two\n(C) three\n(D) four",
        "answer": answer,
        "context": context,
    }


def as_apollo(row: dict) -> dict:
    """The item as Apollo's JSON has it ("(BCDE)" answers, `options` text)."""
    return {"question": row["question"], "options": row["options"], "answer": f"({row['answer']})"}


@pytest.mark.parametrize("source", ["medqa-usmle", "cmexam"])
def test_prompts_are_apollos_for_the_same_draw(source: str) -> None:
    items = [item(i, source, f"question {i} " + "x" * (300 * i), "BCDE") for i in range(8)]
    for seed in range(3):
        for target in items:
            shots = draw_shots(target, items, 3, seed)
            assert len(shots) == 3 and all(s["id"] != target["id"] for s in shots)
            got = build_apollo_prompt(target, items, 3, seed, render_apollo)
            # Apollo's random.sample(items, few_shot + 1), with the project's seeded RNG;
            # the transcription removes the item itself or drops the last.
            drawn = random.Random(f"{seed}:{target['id']}").sample(items, 4)
            few_shot = ZH_SHOT if source == "cmexam" else EN_SHOT
            expected = apollo_prompt(
                as_apollo(target), [as_apollo(s) for s in drawn], few_shot, EN_Q
            )
            assert (got.context if got else None) == expected
            if got is not None:
                assert len(got.context) <= MAX_PROMPT_CHARS


def test_long_prompts_are_skipped_and_counted() -> None:
    items = [item(i, "medqa-usmle", f"q{i}") for i in range(5)]
    items.append(item(5, "medqa-usmle", "y" * 5000))
    prompts, skipped = build_apollo_prompts(items, 3, 0, render_apollo)
    assert skipped == {"medqa-usmle": 1} and "medqa-usmle:5" not in prompts
    # A shot that would pass 4,096 characters is left out; the others are kept.
    for target in items[:5]:
        drew_long = any(s["id"] == "medqa-usmle:5" for s in draw_shots(target, items, 3, 0))
        assert prompts[target["id"]].n_shots == (2 if drew_long else 3)
        assert ("y" * 100 in prompts[target["id"]].context) is False
    chinese = build_apollo_prompts(
        [item(i, "cmexam", f"问{i}") for i in range(4)], 3, 0, render_apollo
    )[0]
    for p in chinese.values():  # shots Chinese, the question English
        *shots, query = p.context.split("<|endoftext|>\n")
        assert all(s.startswith("User:您是一名医生") for s in shots)
        assert query.startswith("User:You are a medical doctor")
    assert len(chinese) == 4
