"""Config loading: presets, overrides, and errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from medbase_ray.config import PRESETS, ConfigError, PipelineConfig, dump_config, load_config


@pytest.mark.parametrize("preset", PRESETS)
def test_every_shipped_preset_loads(preset: str) -> None:
    cfg = load_config(preset=preset)
    assert isinstance(cfg, PipelineConfig)
    # A preset round-trips through its YAML dump unchanged.
    assert PipelineConfig.model_validate(__import__("yaml").safe_load(dump_config(cfg))) == cfg


def test_default_is_tiny_preset() -> None:
    assert load_config().model.name_or_path == "tiny"


def test_overrides_are_parsed_and_validated() -> None:
    cfg = load_config(overrides=["train.lr=2e-5", "train.zero_stage=3", "run.name=x"])
    assert cfg.train.lr == pytest.approx(2e-5)
    assert cfg.train.zero_stage == 3
    assert cfg.run.name == "x"


def test_bad_override_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(overrides=["train.lr=abc"])
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config(overrides=["no_equals_sign"])


def test_invalid_file_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: -1\n  zero_stage: 5\n  bogus: 1\nserve:\n  port: 70000\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    msg = str(info.value)
    assert str(bad) in msg
    for field in ("train.lr", "train.zero_stage", "train.bogus", "serve.port"):
        assert field in msg
    assert "4 problem(s)" in msg


def test_not_yaml_and_not_mapping(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(scalar)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(preset="nope")


def test_stage_dir() -> None:
    cfg = load_config(overrides=["run.root=s3://bucket/x/", "run.name=r1"])
    assert cfg.run.stage_dir("train") == "s3://bucket/x/r1/train"


# -- config modules are leaves ---------------------------------------------------------
_HEAVY = ("torch", "ray", "transformers", "deepspeed")
_CONFIG_MODULES = [
    "medbase_ray.config",
    *(
        f"medbase_ray.{stage}.config"
        for stage in ("rewrite", "prepare", "train", "tune", "serve", "eval")
    ),
]


@pytest.mark.parametrize("module", _CONFIG_MODULES)
def test_config_modules_import_nothing_heavy(module: str) -> None:
    """A fresh interpreter importing a config module loads no torch, ray, transformers
    or deepspeed, and no package module beyond configs (no stage runner)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, importlib; importlib.import_module(sys.argv[1]); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, module], capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in _HEAVY]
    assert heavy == [], f"{module} imports {heavy[:5]}"
    own = [m for m in loaded if m.startswith("medbase_ray.")]
    not_config = [
        m
        for m in own
        if m.rpartition(".")[2] not in ("config", "config_base")
        and m.count(".") > 1  # stage packages themselves are docstring-only
    ]
    assert not_config == [], f"{module} imports {not_config}"


def test_preset_list_is_the_presets_directory() -> None:
    from importlib import resources

    shipped = sorted(
        p.name[:-5]
        for p in (resources.files("medbase_ray") / "presets").iterdir()
        if p.name.endswith(".yaml")
    )
    assert list(PRESETS) == shipped and "tiny" in shipped
