"""CleanConfig (a leaf: no Ray) and `medbase clean`'s arguments, checked before any work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from medbase_ray.clean.config import CleanConfig
from medbase_ray.cli import app
from medbase_ray.config import load_config, preset_names


def test_floors_above_n_are_refused_together():
    with pytest.raises(ValidationError) as err:
        CleanConfig(ngram_words=6, min_words=8, ngram_chars=10, min_chars=12)
    assert "min_words (8) > ngram_words (6)" in str(err.value)
    assert "min_chars (12) > ngram_chars (10)" in str(err.value)


def test_every_preset_cleans_before_prepare_and_the_class_default_does_not():
    assert CleanConfig().enabled is False
    assert all(load_config(preset=name).clean.enabled for name in preset_names())


def test_cli_clean_reports_a_bad_option_before_starting_anything():
    result = CliRunner().invoke(app, ["clean", "--set", "clean.action=delete"])
    assert result.exit_code == 2
    assert "clean.action" in result.output


def test_cli_clean_options():
    result = CliRunner().invoke(app, ["clean", "--help"])
    assert result.exit_code == 0
    assert "--flag-only" in result.output and "--input" in result.output


def test_inputs_take_prepares_source_and_language(tmp_path) -> None:
    """A file that names neither source nor language is read with prepare's
    --source/--language, as prepare reads it; without them its rows are rejects."""
    import json

    from medbase_ray.clean.inputs import iter_input_blocks

    path = tmp_path / "1.dev.jsonl"
    path.write_text(json.dumps(["What is A?", "A is B."]) + "\n", encoding="utf-8")
    (named,) = list(iter_input_blocks([str(path)], 10, {"source": "guidelines", "language": "en"}))
    assert named.column("reject").to_pylist() == [None]
    assert named.column("source").to_pylist() == ["guidelines"]
    assert named.column("language").to_pylist() == ["en"]
    (unnamed,) = list(iter_input_blocks([str(path)], 10))
    assert unnamed.column("id").to_pylist() == [None]
    assert "language" in unnamed.column("reject")[0].as_py()
