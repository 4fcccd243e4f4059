"""`medbase prepare` and the mixture on a real local Ray (bundled data + bad inputs)."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from medbase_ray.config import load_config
from medbase_ray.corpus.readers import read_conversations, sample_dir
from medbase_ray.corpus.records import PACKED_ROW_SCHEMA
from medbase_ray.prepare.config import MixtureSpec
from medbase_ray.prepare.manifest import (
    FingerprintMismatch,
    check_fingerprint,
    fingerprint,
    read_manifest,
)
from medbase_ray.prepare.output import reject_rows
from medbase_ray.prepare.packing import split_samples
from medbase_ray.prepare.pipeline import PrepareError, resolve_mixture, run_prepare
from medbase_ray.prepare.tokenization import tokenize_conversations

pytestmark = pytest.mark.integration
SEQ_LEN = 256
LONG_ANSWER = "fever " * 400  # far over SEQ_LEN tokens


def write_bad_inputs(root: Path) -> Path:
    """Conversations with every kind of problem, next to a few good ones."""
    bad = root / "bad"
    bad.mkdir()
    good = [["What is a fever?", "A body temperature above 38 C."], ["q2", "a2", "q3", "a3"]]
    (bad / "clinic_en.json").write_text(
        json.dumps(
            good
            + [
                ["q", ""],  # empty turn
                ["only a question"],  # odd number of turns
                [1, "a"],  # not a string
                "not a list",
                ["Describe fever.", LONG_ANSWER],  # over-long
            ]
        )
    )
    (bad / "broken_fr.json").write_text('[["q", "a"], ')  # invalid JSON after the first item
    (bad / "rows.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"id": "r1", "source": "forum", "language": "es", "turns": ["q", "a"]}),
                "{not json",
                json.dumps({"id": "r3", "language": "es", "turns": ["q", "a"]}),  # no source
                json.dumps({"id": "r4", "source": "forum", "language": "xx", "turns": ["q", "a"]}),
            ]
        )
        + "\n"
    )
    return bad


def config(root: Path, name: str, inputs: list[str], **prepare):
    sets = [f"run.root={root}", f"run.name={name}", f"prepare.inputs={json.dumps(inputs)}"]
    sets += ["clean.enabled=false"]  # prepare's own reading of the inputs is under test
    sets += [f"prepare.{k}={v}" for k, v in prepare.items()]
    return load_config(overrides=sets)


def read_rows(prepared: str) -> list[dict]:
    manifest = read_manifest(prepared)
    rows = []
    for key, entry in manifest["sources"].items():
        for shard in entry["shards"]:
            table = pq.read_table(Path(prepared) / shard["path"])
            assert table.schema.equals(PACKED_ROW_SCHEMA), shard
            assert shard["path"].startswith(key + "/")
            rows += table.to_pylist()
    return rows


@pytest.fixture(scope="module")
def prepared(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    bad = write_bad_inputs(root)
    apollo = str(sample_dir() / "apollo")
    cfg = config(root, "main", [apollo, str(bad)], seq_len=SEQ_LEN, overlong="drop")
    summary = run_prepare(cfg)
    return cfg, summary, [apollo, str(bad)]


def test_counts_add_up_and_bad_rows_are_rejected_with_reasons(prepared, tokenizer):
    cfg, summary, inputs = prepared
    out = summary["output_dir"]
    m = summary["manifest"]
    assert not summary["skipped"] and (Path(out) / "_SUCCESS").exists()
    assert m["fingerprint"] == fingerprint(tokenizer, "apollo", SEQ_LEN)
    t = m["totals"]
    # In = out + dropped + rejected, against an independent count of the inputs.
    bundled = read_conversations(inputs[0])[1].read
    # clinic_en items, broken_fr (its first item, read before the break, and the break),
    # rows.jsonl lines
    bad_items = 7 + 2 + 4
    assert t["conversations"] == t["samples"] + t["dropped"] + t["rejected"] == bundled + bad_items
    rejects = reject_rows(out, m["rejects"])
    assert len(rejects) == t["dropped"] + t["rejected"]
    by_place = {(Path(r["file"]).name, r["index"]): r for r in rejects}
    expected = {
        ("clinic_en.json", 2): ("turns[1]", "empty turn"),
        ("clinic_en.json", 3): ("turns", "odd number of turns (1)"),
        ("clinic_en.json", 4): ("turns[0]", "expected a string, got int"),
        ("clinic_en.json", 5): ("turns", "expected a list of strings, got str"),
        ("clinic_en.json", 6): ("turns", "over-long: "),
        ("broken_fr.json", 1): ("<file>", "invalid JSON after item 0"),
        ("rows.jsonl", 1): ("<line>", "invalid JSON"),
        ("rows.jsonl", 2): ("source", "missing"),
        ("rows.jsonl", 3): ("language", "unknown language 'xx'"),
    }
    for place, (field, reason) in expected.items():
        assert by_place[place]["field"] == field and by_place[place]["reason"].startswith(reason), (
            place,
            by_place[place],
        )
    assert by_place[("clinic_en.json", 6)]["kind"] == "dropped"
    assert t["rejected"] == 4 + 1 + 3  # clinic_en rows, broken_fr (the break), rows.jsonl
    clinic = m["sources"]["clinic_en"]
    assert (clinic["samples"], clinic["dropped"], clinic["rejected"]) == (2, 1, 4)
    assert (m["sources"]["forum_es"]["samples"], m["sources"]["broken_fr"]["rejected"]) == (1, 1)
    assert m["sources"]["broken_fr"]["samples"] == 1  # read before the break
    # Rejects whose source cannot be known (rows.jsonl) are in the totals only.
    assert t["rejected"] == sum(e["rejected"] for e in m["sources"].values()) + 3


def test_packing_loses_and_duplicates_nothing(prepared, tokenizer):
    cfg, summary, inputs = prepared
    rows = read_rows(summary["output_dir"])
    m = summary["manifest"]
    assert len(rows) == m["totals"]["rows"]
    packed = collections.Counter()
    for row in rows:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) == SEQ_LEN
        for ids, labels in split_samples(
            np.array(row["input_ids"]),
            np.array(row["labels"]),
            row["position_ids"],
            row["n_real_tokens"],
        ):
            packed[(row["source"], row["language"], tuple(ids), tuple(labels))] += 1
    expected = collections.Counter()
    for path in inputs:
        records, _ = read_conversations(path, on_error="reject")
        samples = tokenize_conversations(
            tokenizer, [r["turns"] for r in records], "apollo", SEQ_LEN, "drop"
        )
        for r, s in zip(records, samples, strict=True):
            if s.reject is None:
                key = (r["source"], r["language"], tuple(s.input_ids.tolist()))
                expected[(*key, tuple(s.labels.tolist()))] += 1
    assert packed == expected
    real = sum(r["n_real_tokens"] for r in rows)
    assert real == m["totals"]["real_tokens"]
    assert m["totals"]["padding_fraction"] == pytest.approx(
        1 - real / (len(rows) * SEQ_LEN), abs=1e-5
    )


def test_rerun_skips_complete_output_and_refuses_another_config(prepared, tmp_path):
    cfg, summary, _ = prepared
    out = Path(summary["output_dir"])
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    again = run_prepare(cfg)
    assert (
        again["skipped"] and again["manifest"]["fingerprint"] == summary["manifest"]["fingerprint"]
    )
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == stamps
    other = cfg.model_copy(deep=True)
    other.prepare.seq_len = SEQ_LEN * 2
    with pytest.raises(PrepareError, match="another config"):
        run_prepare(other)


def test_fingerprint_refuses_another_tokenizer_or_chat_format(prepared, tokenizer):
    manifest = read_manifest(prepared[1]["output_dir"])
    check_fingerprint(manifest, tokenizer, "apollo")
    with pytest.raises(FingerprintMismatch, match="chat format 'apollo'"):
        check_fingerprint(manifest, tokenizer, "template")
    other = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    other.add_tokens(["<|new_token|>"])
    with pytest.raises(FingerprintMismatch, match="another tokenizer"):
        check_fingerprint(manifest, other, "apollo")


def digest(ds) -> str:
    h = hashlib.sha256()
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for name in PACKED_ROW_SCHEMA.names:
            h.update(str(batch[name].to_pylist()).encode())
    return h.hexdigest()


def test_mixture_shares_match_the_spec_and_are_reproducible(prepared):
    out = prepared[1]["output_dir"]
    weights = {"en": 0.3, "zh": 0.25, "es": 0.15, "fr": 0.1, "ar": 0.1, "hi": 0.1}
    spec = MixtureSpec(by="language", weights=weights, seed=7)
    ds, report = resolve_mixture(out, spec)
    rows = ds.take_all()
    tokens = collections.Counter()
    for r in rows:
        assert len(r["input_ids"]) == SEQ_LEN
        tokens[r["language"]] += r["n_real_tokens"]
    total = sum(tokens.values())
    assert total == report["total_tokens"]
    for lang, w in weights.items():
        assert abs(tokens[lang] / total - w) < 0.02, (lang, tokens[lang] / total, w)
        assert report["languages"][lang]["share"] == pytest.approx(tokens[lang] / total)
    same = digest(resolve_mixture(out, spec)[0])
    assert same == digest(ds)
    assert digest(resolve_mixture(out, spec.model_copy(update={"seed": 8}))[0]) != same


def test_small_run_truncates_next_fit_reads_datasets_and_cli(ray_local, tmp_path, tokenizer):
    import datasets
    from typer.testing import CliRunner

    from medbase_ray.cli import app

    bad = write_bad_inputs(tmp_path)
    hf_dir = tmp_path / "hf"
    datasets.Dataset.from_list(
        [
            {"id": "h1", "source": "forum", "language": "fr", "turns": ["q", "a"]},
            {"id": "h2", "source": "forum", "language": "fr", "turns": ["q"]},
        ]
    ).save_to_disk(str(hf_dir))
    inputs = [str(bad), f"hf:{hf_dir}"]
    sets = [f"run.root={tmp_path}", "run.name=small", f"prepare.inputs={json.dumps(inputs)}"]
    sets += ["clean.enabled=false"]  # clean reads local files only; hf: is prepare's
    sets += [f"prepare.seq_len={SEQ_LEN}", "prepare.packing=next_fit"]
    result = CliRunner().invoke(app, ["prepare", *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    assert "clinic_en" in result.output and "rejects:" in result.output
    m = read_manifest(str(tmp_path / "small" / "prepared"))
    assert m["packing"] == "next_fit"
    clinic = m["sources"]["clinic_en"]
    assert (clinic["samples"], clinic["truncated"], clinic["dropped"]) == (3, 1, 0)
    forum_fr = m["sources"]["forum_fr"]
    assert (forum_fr["samples"], forum_fr["rejected"]) == (1, 1)
    # An incomplete output (no _SUCCESS) is made again.
    (tmp_path / "small" / "prepared" / "_SUCCESS").unlink()
    cfg = load_config(overrides=sets)
    assert not run_prepare(cfg)["skipped"]
    missing = CliRunner().invoke(
        app,
        ["prepare", "--set", f"run.root={tmp_path}", "--set", 'prepare.inputs=["/no/such/dir"]'],
    )
    assert missing.exit_code == 1 and "no such file" in missing.output
