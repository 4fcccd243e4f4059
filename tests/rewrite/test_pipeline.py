"""`run_rewrite` end to end on a local Ray against the fault-injecting teacher: every
input ends in exactly one output or one reject with the expected reason; usage adds up;
a re-run spends nothing; --dry-run figures; the API key is sent but never written."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rewrite_inputs import passage, write_jsonl

from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.readers import read_conversations
from medbase_ray.rewrite.pipeline import run_rewrite

pytestmark = pytest.mark.integration

KEY_ENV, KEY = "MEDBASE_REWRITE_TEST_KEY", "sk-rewrite-test-0123456789"

# marker -> expected reason of (qa, dialogue, translate of qa, translate of dialogue);
# None = an output record; "-" = no such item (its source conversation was rejected).
CASES = {
    "429x1": (None, None, None, None),
    "500": ("teacher_error", "teacher_error", "-", "-"),
    "slow": ("teacher_error", "teacher_error", "-", "-"),
    "truncated": ("unparsable", "unparsable", "-", "-"),
    # the question and answer are the apology, which then translates fine
    "notags": (None, "unparsable", None, "-"),
    "wronglang": ("wrong_language", "unparsable", "-", "-"),
    "long": ("too_long", "too_long", "-", "-"),
    "drift": (None, None, "round_trip_failed", "round_trip_failed"),
}


def make_input(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    rows = [passage(i) for i in range(4)] + [passage(0, "zh"), passage(0, "es")]
    expected: dict[str, str | None] = {}
    for r in rows:
        translated = "wrong_language" if r["language"] == "zh" else None  # echo stays Chinese
        expected |= {f"{r['id']}#qa": None, f"{r['id']}#dialogue": None}
        expected |= {f"{r['id']}#qa#translate-fr": translated}
        expected |= {f"{r['id']}#dialogue#translate-fr": translated}
    for marker, reasons in CASES.items():
        row = passage(0, marker=f"[fault:{marker}]") | {"id": marker}
        rows.append(row)
        ids = ("#qa", "#dialogue", "#qa#translate-fr", "#dialogue#translate-fr")
        expected |= {marker + s: r for s, r in zip(ids, reasons, strict=True) if r != "-"}
    rows.append({"id": "huge", "source": "guideline", "language": "en", "text": "word " * 1000})
    expected |= {"huge#qa": "too_long", "huge#dialogue": "too_long"}
    rows.append({"id": "bad", "source": "guideline", "language": "en"})  # no text
    path = write_jsonl(tmp_path / "passages.jsonl", rows)
    expected[f"{path}:{len(rows) - 1}#input"] = "bad_input"
    return path, expected


def config(tmp_path: Path, input_path: Path, base_url: str) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "run": {"root": str(tmp_path / "runs"), "name": "faults"},
            "rewrite": {
                "input": str(input_path),
                "tasks": ["qa", "dialogue", "translate"],
                "target_languages": ["fr"],
                "base_url": base_url,
                "api_key_env": KEY_ENV,
                "max_in_flight": 8,
                "max_retries": 1,
                "timeout_s": 1.5,  # the slow fault answers after 2.5 s
                "max_input_chars": 2000,
                "chrf_threshold": 50,
            },
        }
    )


def test_every_input_ends_in_one_output_or_one_reject(
    tmp_path: Path, ray_local, fault_teacher, monkeypatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    input_path, expected = make_input(tmp_path)
    cfg = config(tmp_path, input_path, fault_teacher.base_url)
    server = fault_teacher.server

    server.reset()
    dry = run_rewrite(cfg, dry_run=True)
    # qa 2 + dialogue 1 request per passage (14; "huge" is rejected before any request),
    # then 2 per translation of every conversation phase 1 could make (28)
    assert dry["requests"] == 14 * 3 + 28 * 2
    assert dry["pending"] == dry["in"] == 1 + 15 * 2 + 30 and dry["skipped"] == 0
    assert dry["approx_prompt_tokens"] > 0 and dry["max_completion_tokens"] == dry["requests"] * 512
    assert server.stats()["requests"] == 0 and not (tmp_path / "runs").exists()

    summary = run_rewrite(cfg)
    out_dir = Path(summary["output_dir"])
    conversations, counts = read_conversations(out_dir / "conversations")  # what prepare reads
    rejects = pq.read_table(out_dir / "rejects").to_pylist()
    actual = {c["id"]: None for c in conversations} | {r["id"]: r["reason"] for r in rejects}
    assert actual == expected
    assert len(conversations) + len(rejects) == len(expected)  # no id twice
    assert counts.rejected == 0 and all(r["detail"] for r in rejects)
    assert (out_dir / "_SUCCESS").exists() and (out_dir / "config.yaml").exists()
    assert summary["in"] == len(expected) == summary["out"] + summary["rejected"]
    assert summary["out"] == len(conversations)
    reasons = [r for r in expected.values() if r is not None]
    assert summary["rejected_by_reason"] == {r: reasons.count(r) for r in set(reasons)}
    by_id = {c["id"]: c for c in conversations}
    assert by_id["en-0#qa"]["turns"][1].startswith("Hypertension is treated")
    assert by_id["es-0#dialogue#translate-fr"]["language"] == "fr"
    assert next(r for r in rejects if r["id"] == "notags#dialogue")["raw"].startswith("I am sorry")

    # usage: what the server handed out (and the client could read) is what is reported
    served = server.stats()["usage"]
    assert summary["usage"] == summary["usage_all_runs"]
    assert summary["usage"]["requests"] == served["requests"]
    assert summary["usage"]["prompt_tokens"] == served["prompt_tokens"]
    assert summary["usage"]["completion_tokens"] == served["completion_tokens"]

    # the key from the environment was sent, and is written nowhere
    assert f"Bearer {KEY}" in server.auth_headers
    for path in out_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path

    # a re-run skips everything and spends nothing
    server.reset()
    again = run_rewrite(cfg)
    assert again["skipped"] == again["in"] == summary["in"]
    assert again["usage"]["requests"] == 0 and server.stats()["requests"] == 0
    assert again["rejected_by_reason"] == summary["rejected_by_reason"]
    assert run_rewrite(cfg, dry_run=True)["requests"] == 0
