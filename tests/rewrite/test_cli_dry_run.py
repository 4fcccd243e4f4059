"""`medbase rewrite --dry-run` on the bundled sample: the figures, and nothing spent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medbase_ray.corpus.readers import read_raw_texts, sample_dir
from medbase_ray.rewrite.estimate import approx_tokens
from medbase_ray.rewrite.prompts import load_prompts


def test_dry_run_prices_the_bundled_sample_and_sends_nothing(tmp_path: Path) -> None:
    records, _ = read_raw_texts(sample_dir() / "apollo")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "medbase_ray.cli",
            "rewrite",
            "--dry-run",
            "--task",
            "dialogue",
            "--task",
            "qa",
            # nothing listens there: a dry run must not need the teacher
            "--base-url",
            "http://127.0.0.1:18399/v1",
            "--set",
            "rewrite.max_tokens=100",
            "--set",
            f"run.root={tmp_path / 'runs'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    n = len(records)
    assert figures["dry_run"] is True and figures["in"] == figures["pending"] == 2 * n
    assert figures["requests"] == 3 * n  # qa: question + answer; dialogue: one
    assert figures["max_completion_tokens"] == 3 * n * 100
    prompts = load_prompts()
    dialogue_prompts = sum(
        approx_tokens(prompts.render("dialogue", r["language"], text=r["text"])) for r in records
    )
    # the dialogue prompts are known exactly; qa's second prompt holds an assumed question
    assert figures["approx_prompt_tokens"] > dialogue_prompts * 2
    assert figures["approx_completion_tokens"] <= figures["max_completion_tokens"]
    assert not (tmp_path / "runs").exists()


def test_bad_input_fails_before_work_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "texts.jsonl"
    bad.write_text('{"id": "a", "source": "s", "language": "en", "text": "x"}\n' * 2)
    out = subprocess.run(
        [sys.executable, "-m", "medbase_ray.cli", "rewrite", "--dry-run", "--input", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert str(bad) in out.stderr and "'a' appears twice" in out.stderr
