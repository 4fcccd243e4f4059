"""MinHash, LSH and keep-one-per-group (pure core, no Ray), and the stage's shard passes
run in-process on planted duplicates."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medbase_ray.clean.batch import DedupSettings, annotate_batch
from medbase_ray.clean.dedup import KEY_SCHEMA, find_duplicates
from medbase_ray.clean.index import build_index
from medbase_ray.clean.inputs import INPUT_SCHEMA
from medbase_ray.clean.minhash import candidate_probability, lsh_params, minhash_signatures
from medbase_ray.clean.report import merge_shard_results
from medbase_ray.clean.shards import (
    attach_signatures,
    decide_partition,
    finish_shard,
    write_annotated,
)
from medbase_ray.clean.text import dedup_text

BASE = (
    "Scurvy is caused by a lack of vitamin C in the diet. It presents with bleeding gums, "
    "bruising, poor wound healing and joint pain, and it is treated with vitamin C and a "
    "diet rich in fresh fruit and vegetables; symptoms improve within days."
)


ZH_ANSWER = (
    "坏血病是由维生素C缺乏引起的疾病，常见于长期缺少新鲜水果和蔬菜的人，表现为牙龈出血、"
    "皮下瘀斑、伤口愈合不良和关节疼痛，补充维生素C后症状通常在数天内好转。"
)


def _jaccard(a: str, b: str, k: int = 5) -> float:
    sa = {dedup_text(a)[i : i + k] for i in range(len(dedup_text(a)) - k + 1)}
    sb = {dedup_text(b)[i : i + k] for i in range(len(dedup_text(b)) - k + 1)}
    return len(sa & sb) / len(sa | sb)


def test_minhash_estimates_jaccard():
    near = BASE.replace("joint pain", "pain in the joints")
    far = "Rickets is caused by a lack of vitamin D; it softens the bones of children."
    sigs = minhash_signatures([BASE, near, far, BASE], num_perm=256)
    assert (sigs[0] == sigs[3]).all()
    for other, i in ((near, 1), (far, 2)):
        assert abs((sigs[0] == sigs[i]).mean() - _jaccard(BASE, other)) < 0.1


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_lsh_params_make_pairs_at_the_threshold_candidates(threshold):
    bands, rows = lsh_params(threshold, 128)
    assert bands * rows <= 128
    assert candidate_probability(threshold, bands, rows) >= 0.9
    # One row more per band would miss more than 10% of them.
    assert candidate_probability(threshold, 128 // (rows + 1), rows + 1) < 0.9


def _keys(rows):
    return pa.Table.from_pylist(rows, schema=KEY_SCHEMA)


def test_find_duplicates_keeps_the_lowest_rank_whatever_the_order():
    rows = [
        {"key": 7, "kind": 0, "rank": r, "shard": "s", "row": i, "id": f"r{r}"}
        for i, r in enumerate([30, 10, 20])
    ] + [{"key": 8, "kind": 1, "rank": 5, "shard": "t", "row": 0, "id": "alone"}]
    for seed in range(3):
        random.Random(seed).shuffle(rows)
        dups = find_duplicates(_keys(rows)).to_pylist()
        assert sorted((d["kept_id"], d["row"]) for d in dups) == [("r10", 0), ("r10", 2)]


def _rows(records):
    return pa.Table.from_pylist(
        [
            {
                **r,
                "file": "planted.jsonl",
                "index": int(r["id"].encode().hex(), 16) % 2**62,
                "reject": None,
            }
            for r in records
        ],
        schema=INPUT_SCHEMA,
    )


def clean_in_process(tables, tmp_path, partitions, index=None, threshold=0.8):
    """The stage's passes without Ray (the Ray layer maps the same functions)."""
    bands, rows = lsh_params(threshold, 128)
    settings = DedupSettings(True, 128, 5, bands, rows, 0)
    work, out = str(tmp_path / "work"), str(tmp_path / "out")
    shards = [
        write_annotated(annotate_batch(t, index, settings), work, partitions)["shard"]
        for t in tables
    ]
    for p in range(partitions):
        decide_partition(work, p)
    candidates = sum(attach_signatures(work, s) for s in shards)
    table, _ = merge_shard_results(finish_shard(work, out, s, False, threshold) for s in shards)
    kept, rejects = (_read(tmp_path / "out" / name) for name in ("conversations", "rejects"))
    return table, kept, rejects, candidates


def _read(path):
    return pq.read_table(str(path)).to_pylist() if path.exists() else []


def _corpus():
    facts = [
        f"Fact {i}: condition number {i} is treated with drug {i * 7} at a dose of {i} mg "
        f"twice a day for {i + 2} days, and patients recover in about {i + 4} weeks."
        for i in range(40)
    ]
    recs = [
        {"id": f"wiki:{i}", "source": "wiki", "language": "en", "turns": [f"Tell me fact {i}.", f]}
        for i, f in enumerate(facts)
    ]
    planted = [
        # Exact duplicates across sources (case and spacing differ).
        {
            "id": "web:1",
            "source": "web",
            "language": "en",
            "turns": ["TELL ME FACT 3.", facts[3].upper()],
        },
        {
            "id": "book:1",
            "source": "book",
            "language": "en",
            "turns": ["Tell  me fact 3.", facts[3]],
        },
        # Near duplicates (one word changed) in another source.
        {
            "id": "web:2",
            "source": "web",
            "language": "en",
            "turns": ["Tell me fact 5.", facts[5].replace("recover", "get better")],
        },
        {
            "id": "zh:1",
            "source": "web",
            "language": "zh",
            "turns": ["坏血病是什么？", ZH_ANSWER],
        },
        {
            "id": "zh:2",
            "source": "book",
            "language": "zh",
            "turns": ["坏血病是什么？", ZH_ANSWER.replace("和关节", "及关节")],
        },
    ]
    return recs, planted


def test_planted_duplicates_collapse_to_one_each_the_same_every_run(tmp_path):
    recs, planted = _corpus()
    runs = []
    for run, (partitions, seed) in enumerate([(1, 0), (4, 1), (7, 2)]):
        records = recs + planted
        random.Random(seed).shuffle(records)
        tables = [_rows(records[i : i + 9]) for i in range(0, len(records), 9)]
        table, kept, rejects, candidates = clean_in_process(tables, tmp_path / str(run), partitions)
        total_in = sum(c["in"] for c in table.values())
        assert total_in == len(records) == len(kept) + len(rejects)
        removed = {r["id"]: (r["reason"], r["kept_id"]) for r in rejects}
        # fact 3: three copies -> one; fact 5: two -> one; the Chinese pair -> one.
        assert len(removed) == 4, removed
        groups = [{"wiki:3", "web:1", "book:1"}, {"wiki:5", "web:2"}, {"zh:1", "zh:2"}]
        for group in groups:
            assert len(group - set(removed)) == 1  # one kept ...
            for rid in group & set(removed):  # ... and the others name it
                assert removed[rid][1] in group - set(removed)
        runs.append(removed)
    assert runs[0] == runs[1] == runs[2]


def test_templated_records_below_the_threshold_are_all_kept(tmp_path):
    # One sentence frame, other drugs (Jaccard 0.65-0.78 pairwise): LSH makes some of
    # them candidates, the signature check (estimate < 0.8) keeps them all.
    drugs = ["metformin", "warfarin", "atropine", "flumazenil", "glucagon", "pralidoxime"]
    drugs += ["fomepizole", "hydroxocobalamin", "physostigmine", "octreotide"]
    records = [
        {
            "id": f"t:{i}",
            "source": "qa",
            "language": "en",
            "turns": [
                f"What is the antidote for {d}?",
                f"For {d}, the antidote is given in hospital, watching the heart rate and breathing.",
            ],
        }
        for i, d in enumerate(drugs)
    ]
    texts = ["\n".join(r["turns"]) for r in records]
    assert max(_jaccard(a, b) for a in texts for b in texts if a != b) < 0.8
    table, kept, rejects, candidates = clean_in_process([_rows(records)], tmp_path, 2)
    assert candidates > 0  # the check was needed ...
    assert len(kept) == len(records) and not rejects  # ... and kept them all
    assert all(c["kept"] == c["in"] for c in table.values())


def test_contaminated_records_are_removed_with_item_field_and_ngram(tmp_path):
    item = {
        "id": "test:7",
        "language": "en",
        "options": "(A) Vitamin C\n(B) Iron",
        "question": "Which vitamin deficiency is the classic cause of scurvy in sailors on long voyages?",
    }
    recs, _ = _corpus()
    bad = {
        "id": "web:9",
        "source": "web",
        "language": "en",
        "turns": [
            "Quiz",
            "which vitamin deficiency is the CLASSIC cause of scurvy in sailors on long voyages",
        ],
    }
    table, kept, rejects, candidates = clean_in_process(
        [_rows(recs + [bad])], tmp_path, 2, build_index([item])
    )
    (reject,) = rejects
    assert reject["id"] == "web:9" and reject["reason"] == "contaminated"
    assert reject["benchmark_item"] == "test:7" and reject["field"] == "question"
    assert (
        reject["ngram"]
        == "which vitamin deficiency is the classic cause of scurvy in sailors on long"
    )
    assert len(kept) == len(recs)
    assert table["web/en"]["removed_contaminated"] == 1 and table["wiki/en"]["kept"] == len(recs)
