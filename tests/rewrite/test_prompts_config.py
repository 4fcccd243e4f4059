"""The prompt sets (YAML data) and the rewrite config's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from medbase_ray.config import ConfigError, PipelineConfig, load_config
from medbase_ray.corpus.languages import LANGUAGES
from medbase_ray.rewrite.prompts import REQUIRED_PLACEHOLDERS, load_prompts, render_template


def test_shipped_prompts_cover_every_task_and_language() -> None:
    prompts = load_prompts()
    for kind in REQUIRED_PLACEHOLDERS:
        assert prompts.missing(kind, set(LANGUAGES)) == [], kind
    # Apollo's back-translation prompts, with the language named
    question = prompts.template("qa_question", "zh")
    assert "does not explicitly reference the text" in question and "in Chinese" in question
    assert "<Patient>" in prompts.template("dialogue", "hi") and "in Hindi" in prompts.template(
        "dialogue", "hi"
    )


def test_render_fills_placeholders_once_and_leaves_other_braces() -> None:
    text = "Dose {mg} per kg; see {text}"
    out = render_template("A {text} B {unknown}", {"text": text})
    assert out == "A Dose {mg} per kg; see {text} B {unknown}"


def test_a_user_prompt_file_replaces_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("dialogue:\n  en: 'Write a dialogue about: {text}'\n", encoding="utf-8")
    prompts = load_prompts(path)
    assert prompts.render("dialogue", "en", text="asthma") == "Write a dialogue about: asthma"
    assert prompts.missing("dialogue", {"en", "zh"}) == ["zh"]


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("dialogue:\n  en: 'no placeholder here'\n", "dialogue.en: missing placeholder(s) {text}"),
        (
            "qa_answer:\n  en: '{question} only'\n",
            "qa_answer.en: missing placeholder(s) {reference}",
        ),
        ("dialogue:\n  xx: '{text}'\n", "dialogue.xx: unknown language"),
        ("dialog:\n  en: '{text}'\n", "unknown keys ['dialog']"),
    ],
)
def test_bad_prompt_files_are_named_with_the_key(
    tmp_path: Path, yaml_text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_prompts(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_config_rejects_translate_without_targets_and_unknown_targets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["rewrite.tasks=[qa, translate]"])
    assert "translate task needs at least one" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["rewrite.tasks=[translate]", "rewrite.target_languages=[xx]"])
    assert "unknown ['xx']" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["rewrite.max_in_flight=0"])
    assert "rewrite.max_in_flight" in str(err.value)
    with pytest.raises(ConfigError):
        load_config(overrides=["rewrite.api_key=sk-123"])  # keys never live in a config


def test_defaults_are_valid() -> None:
    cfg = PipelineConfig()
    assert cfg.rewrite.tasks == ["qa"] and cfg.rewrite.max_in_flight == 64
