"""`run_clean` on a real local Ray: the bundled corpus plus planted contamination,
duplicates and a bad row, under a file:// run root; then the skip of a complete output."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq

from medbase_ray.clean.pipeline import cleaned_inputs, run_clean
from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.readers import read_conversations, read_eval_items, sample_dir

BUNDLED = 1314  # conversations in the bundled sample corpus


def _planted(tmp_path):
    items, _ = read_eval_items(sample_dir() / "xmedbench" / "test.json")
    en = next(it for it in items if it["language"] == "en")
    zh = next(it for it in items if it["language"] == "zh")
    fr = next(it for it in items if it["language"] == "fr")
    bundled, _ = read_conversations(sample_dir() / "apollo" / "medicalGuideline_en_qa.json")
    long_answer = " ".join(["Rest and fluids help most patients recover at home."] * 40)
    rows = [
        {
            "id": "web:q-en",
            "source": "web",
            "language": "en",
            "turns": [en["question"].upper(), "I think it is the first option."],
        },
        {
            "id": "web:q-zh",
            "source": "web",
            "language": "zh",
            "turns": ["请回答" + zh["question"].rstrip("？") + "并解释", "好的"],
        },
        {
            "id": "web:q-fr",
            "source": "web",
            "language": "fr",
            "turns": ["Question ?", f"{long_answer} {fr['question']} {long_answer}"],
        },
        {"id": "web:dup", "source": "web", "language": "en", "turns": bundled[0]["turns"]},
        {
            "id": "web:near",
            "source": "web",
            "language": "en",
            "turns": [t.replace(".", "!", 1) for t in bundled[5]["turns"]],
        },
        {"id": "web:bad", "source": "web", "language": "en", "turns": ["a question alone"]},
    ]
    corpus = tmp_path / "corpus"
    shutil.copytree(sample_dir() / "apollo", corpus / "apollo")
    with (corpus / "web.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return corpus, {"web:q-en": en["id"], "web:q-zh": zh["id"], "web:q-fr": fr["id"]}


def test_clean_on_ray_removes_the_planted_rows_and_keeps_the_bundled_corpus(ray_local, tmp_path):
    corpus, planted_items = _planted(tmp_path)
    cfg = PipelineConfig()
    cfg.run.root = f"file://{tmp_path}/runs"
    cfg.clean.inputs = [str(corpus)]
    cfg.clean.batch_rows = 400  # several shards
    summary = run_clean(cfg)
    assert not summary["skipped"]
    total = summary["total"]
    assert total["in"] == BUNDLED + 6
    assert (total["removed_contaminated"], total["contaminated"]) == (3, 3)
    assert (total["exact_duplicate"], total["near_duplicate"], total["invalid"]) == (1, 1, 1)
    assert total["kept"] == BUNDLED  # the bundled corpus loses nothing (one copy of each)

    out = tmp_path / "runs" / "demo" / "clean"
    assert (out / "_SUCCESS").exists() and (out / "report.md").exists()
    report = json.loads((out / "report.json").read_text())
    table = report["by_source_language"]
    assert table["web/en"]["in"] == 3 and table["web/zh"]["removed_contaminated"] == 1
    assert table["?/?"] == {**table["?/?"], "in": 1, "invalid": 1}  # unreadable: no language
    assert {x["item"] for x in report["top_benchmark_items"]} == set(planted_items.values())
    rejects = {r["id"] or "bad": r for r in pq.read_table(out / "rejects").to_pylist()}
    for rid, item in planted_items.items():
        assert rejects[rid]["reason"] == "contaminated"
        assert rejects[rid]["benchmark_item"] == item and rejects[rid]["field"] == "question"
        assert rejects[rid]["ngram"]
    dup = next(r for r in rejects.values() if r["reason"] == "exact_duplicate")
    assert {dup["id"], dup["kept_id"]} == {"web:dup", "medicalGuideline_en_qa:0"}
    near = next(r for r in rejects.values() if r["reason"] == "near_duplicate")
    assert {near["id"], near["kept_id"]} == {"web:near", "medicalGuideline_en_qa:5"}
    assert rejects["bad"]["reason"] == "invalid" and "odd number" in rejects["bad"]["detail"]

    # What prepare reads: the conversation contract, every kept record once.
    kept, counts = read_conversations(out / "conversations")
    assert counts.kept == BUNDLED and len({(r["source"], r["id"]) for r in kept}) == BUNDLED

    again = run_clean(cfg)
    assert again["skipped"] and again["total"] == total
    # What prepare is given when clean.enabled: the kept conversations (clean skipped).
    assert cleaned_inputs(cfg) == [str(out / "conversations")]
