"""The whole pipeline through `medbase demo` on the tiny preset: rewrite (the untrained
model's own endpoint as the teacher) -> eval before -> prepare -> tune (two mixtures) ->
train -> serve -> eval after -> report.html (issues 6, 13 and 16).

The demo runs once per module, in-process (the session's local Ray), with --no-wait so
that it returns and leaves the trained model's endpoint up for the checks here.
`test_pipeline_end_to_end` checks every stage's output, the endpoint and the examples the
demo prints; `test_learning_bar` holds issue 6's bar (cloze accuracy at least 15 points
above the untrained model, averaged over the six languages, and above chance in each).
`make test-learning` runs this module alone and prints the demo's output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medbase_ray.cli import app
from medbase_ray.corpus.languages import LANGUAGES
from medbase_ray.corpus.readers import read_eval_items, sample_dir
from medbase_ray.demo import REWRITE_PASSAGES_PER_LANGUAGE
from medbase_ray.pipeline import STAGES, language_accuracies, macro_accuracy
from medbase_ray.report.build import SECTIONS
from medbase_ray.stage import StageOutput

pytestmark = pytest.mark.integration

CHANCE = 0.25  # every bundled benchmark item has 4 options
FIGURES = ("tokens-by-language", "training-curves", "tune-trials", "accuracy")


@pytest.fixture(scope="module")
def demo(ray_local, tmp_path_factory) -> dict:
    from ray import serve

    root = tmp_path_factory.mktemp("pipeline")
    port = int(os.environ.get("MEDBASE_TEST_SERVE_PORT", "18000"))
    overrides = [f"run.root={root}", "run.name=learn", "eval.mode=cloze", "eval.k_shot=0",
                 f"serve.port={port}"]  # fmt: skip
    args = ["demo", "--no-wait", "--preset", "tiny"]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    print(result.output)
    assert result.exit_code == 0, result.output
    run = Path(root) / "learn"
    reports = {
        name: json.loads((run / "eval" / name / "report.json").read_text())
        for name in ("untrained", "trained")
    }
    yield {"run": run, "port": port, "output": result.output, **reports}
    serve.delete("trained")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_pipeline_end_to_end(demo: dict) -> None:
    run, port, output = demo["run"], demo["port"], demo["output"]
    for stage in ("rewrite", "prepared", "tune", "train", "eval/untrained", "eval/trained"):
        assert (run / stage / "_SUCCESS").exists(), stage
    # rewrite: the sample the demo sends, every item ending as a record or a reject
    rewrite = StageOutput(run / "rewrite").summary()
    assert rewrite["rows_read"] == REWRITE_PASSAGES_PER_LANGUAGE * len(LANGUAGES)
    assert rewrite["in"] == rewrite["out"] + rewrite["rejected"] == rewrite["rows_read"]
    assert sum(rewrite["rejected_by_reason"].values()) == rewrite["rejected"]
    # tune: the demo's two mixtures; the final run trained on the best one
    tune = read_json(run / "tune" / "results.json")
    assert len(tune["trials"]) == 2
    train = StageOutput(run / "train").summary()
    realised = train["mixture"]["language_shares"]
    for lang, share in tune["best"]["shares"].items():
        assert abs(realised[lang] - share) < 0.02, (lang, realised, tune["best"]["shares"])
    # eval: both models through their endpoints, on every item of the bundled benchmark
    items, _ = read_eval_items(sample_dir() / "xmedbench" / "test.json")
    before, after = demo["untrained"], demo["trained"]
    assert before["items"] == after["items"] == len(items)
    base = f"http://127.0.0.1:{port}"
    assert before["run"]["model"] == f"{base}/untrained/v1 tiny"
    assert after["run"]["model"] == f"{base}/trained/v1 final"
    assert set(language_accuracies(after)) == set(LANGUAGES)
    # The training loss fell and the trained model is clearly better than the untrained.
    losses = [float(row["loss"]) for row in csv_rows(run / "train" / "metrics.csv") if row["loss"]]
    assert losses and losses[-1] < 0.6 * losses[0]
    assert macro_accuracy(after) - macro_accuracy(before) >= 0.05
    # one progress line per stage, then the report and the endpoint
    for stage in STAGES:
        assert re.search(rf"^{stage}\s+done", output, flags=re.M), stage
    assert f"report:   {run / 'report.html'}" in output
    assert f"endpoint: {base}/trained/v1 (model 'final')" in output


def csv_rows(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_report_of_the_run_has_every_section_and_figure(demo: dict) -> None:
    page = (demo["run"] / "report.html").read_text(encoding="utf-8")
    found = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', page, flags=re.S))
    assert list(found) == list(SECTIONS)
    assert "in this run." not in page  # every stage had something to show
    shown = re.findall(r'data-figure="([a-z-]+)"[^>]*src="data:image/png;base64,', page)
    assert sorted(shown) == sorted(FIGURES)
    assert "medbase demo --preset tiny --set run.root=" in found["commands"]


def test_printed_examples_work_as_printed(demo: dict) -> None:
    lines = [line.strip() for line in demo["output"].splitlines()]
    curl = next(line for line in lines if line.startswith("curl "))
    python = next(line for line in lines if line.startswith("python -c "))
    answer = json.loads(subprocess.run(shlex.split(curl), capture_output=True, text=True,
                                       timeout=120, check=True).stdout)  # fmt: skip
    assert answer["model"] == "final" and answer["choices"][0]["message"]["content"]
    argv = [sys.executable, *shlex.split(python)[1:]]
    printed = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    assert printed.stdout.strip()


def test_learning_bar(demo: dict) -> None:
    before, after = demo["untrained"], demo["trained"]
    gain = macro_accuracy(after) - macro_accuracy(before)
    assert gain >= 0.15, f"macro cloze accuracy gained only {100 * gain:.1f} points"
    below = {lang: acc for lang, acc in language_accuracies(after).items() if acc <= CHANCE}
    assert not below, f"at or below chance after training: {below}"
