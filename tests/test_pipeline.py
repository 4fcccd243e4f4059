"""The whole pipeline on the tiny preset: prepare -> train -> serve -> eval, through the
endpoint, before and after training (issue 6, "the model must learn").

The pipeline runs once per module. `test_pipeline_end_to_end` checks every stage's output
and that training helps; `test_learning_bar` holds the issue's bar (cloze accuracy at
least 15 points above the untrained model, averaged over the six languages, and above
chance in each). `make test-learning` runs this module alone and prints the table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medbase_ray.config import load_config
from medbase_ray.corpus.languages import LANGUAGES
from medbase_ray.pipeline import format_comparison, language_accuracies, run_pipeline

pytestmark = pytest.mark.integration

CHANCE = 0.25  # every bundled benchmark item has 4 options


@pytest.fixture(scope="module")
def pipeline_result(ray_local, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pipeline")
    cfg = load_config(
        preset="tiny",
        overrides=[f"run.root={root}", "run.name=learn", "eval.mode=cloze", "eval.k_shot=0"],
    )
    result = run_pipeline(cfg)
    result["root"] = Path(root) / "learn"
    print(format_comparison(result["before"], result["after"]))
    return result


def macro(report: dict) -> float:
    return report["accuracy"]["macro_average"]["accuracy"]


def test_pipeline_end_to_end(pipeline_result: dict) -> None:
    root = pipeline_result["root"]
    for stage in ("prepared", "train", "eval/untrained", "eval/trained"):
        assert (root / stage / "_SUCCESS").exists(), stage
    before, after = pipeline_result["before"], pipeline_result["after"]
    # Both evaluations went through an endpoint, of different models, on every test item.
    assert before["items"] == after["items"] >= 40 * len(LANGUAGES)
    assert before["run"]["model"] != after["run"]["model"]
    assert set(language_accuracies(after)) == set(LANGUAGES)
    # The training loss fell and the trained model is clearly better than the untrained.
    losses = [m["loss"] for m in pipeline_result["train"]["metrics"] if "loss" in m]
    assert losses and losses[-1] < 0.6 * losses[0]
    assert macro(after) - macro(before) >= 0.05


def test_learning_bar(pipeline_result: dict) -> None:
    before, after = pipeline_result["before"], pipeline_result["after"]
    gain = macro(after) - macro(before)
    assert gain >= 0.15, f"macro cloze accuracy gained only {100 * gain:.1f} points"
    below = {lang: acc for lang, acc in language_accuracies(after).items() if acc <= CHANCE}
    assert not below, f"at or below chance after training: {below}"
