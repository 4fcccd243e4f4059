"""docs/config.md is generated from the config classes (`medbase config docs`), and
`medbase config show` prints a resolved config that loads back as the same config."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from medbase_ray.cli import app
from medbase_ray.config import PipelineConfig, load_config, preset_names
from medbase_ray.report.config_docs import (
    fields_without_description,
    iter_fields,
    render_config_docs,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"
runner = CliRunner()


def test_every_config_field_says_what_it_means() -> None:
    assert fields_without_description() == [], (
        "add Field(description=...) to these config fields, then regenerate the docs "
        "(medbase config docs --out docs/config.md)"
    )


def test_committed_config_reference_is_what_the_code_generates() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_config_docs(), (
        "docs/config.md is stale: run `medbase config docs --out docs/config.md`"
    )


def test_reference_lists_every_field_with_each_presets_value() -> None:
    text = render_config_docs()
    for dotted, _ in iter_fields(PipelineConfig):
        section, _, field = dotted.partition(".")
        assert f"| `{field}` |" in text, dotted
    # A preset's own value is shown in its column: the tiny preset's learning rate.
    tiny_lr = load_config(preset="tiny").train.lr
    assert tiny_lr != PipelineConfig().train.lr
    header = next(line for line in text.splitlines() if line.startswith("| field |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    row = next(line for line in text.splitlines() if line.startswith("| `lr` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[columns.index("tiny")].strip("`")) == tiny_lr


def test_config_docs_command_writes_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "config.md"
    result = runner.invoke(app, ["config", "docs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == render_config_docs()


def test_config_show_prints_the_resolved_config_of_each_preset() -> None:
    for preset in preset_names():
        result = runner.invoke(app, ["config", "show", "--preset", preset, "--set", "train.lr=0.5"])
        assert result.exit_code == 0, result.output
        shown = PipelineConfig.model_validate(yaml.safe_load(result.stdout))
        expected = load_config(preset=preset, overrides=["train.lr=0.5"])
        assert shown == expected and shown.train.lr == 0.5


def test_config_show_names_a_bad_override() -> None:
    result = runner.invoke(app, ["config", "show", "--set", "train.lr=-1"])
    assert result.exit_code == 2
    assert "train.lr" in result.output
