"""Typed configuration: one pydantic model per stage, composed into `PipelineConfig`.

Configs are data: YAML presets shipped in `medbase_ray/presets/`, plus dotted overrides
from the command line (`--set train.lr=2e-5`). Defaults live in the classes only and
unknown keys fail, so a typo is an error before any work starts, naming the file and
the field (litgpt's "validate once, report every problem together").
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from medbase_ray.clean.config import CleanConfig
from medbase_ray.config_base import StrictModel
from medbase_ray.eval.config import EvalConfig
from medbase_ray.prepare.config import MixtureSpec, PrepareConfig
from medbase_ray.rewrite.config import RewriteConfig
from medbase_ray.serve.config import ServeConfig
from medbase_ray.train.config import TrainConfig
from medbase_ray.tune.config import TuneConfig, trial_grad_accum


class ModelConfig(StrictModel):
    name_or_path: str = Field(
        default="tiny",
        description=(
            '"tiny" is the embedded default (built on first use, no download); anything else '
            "is a Hugging Face model directory or name, loaded as is."
        ),
    )
    chat_format: Literal["apollo", "template"] | None = Field(
        default=None,
        description=(
            "apollo: `User:{q}\\nAssistant:{a}<|endoftext|>`; template: the tokenizer's "
            "chat_template. None: the checkpoint's own (its medbase_config.yaml), else "
            "apollo. Resolve it with "
            "medbase_ray.models.checkpoint_info.resolve_model_settings, not by reading it "
            "here."
        ),
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description=(
            "Weights' dtype for train, serve and eval; auto: bfloat16 on GPU, float32 on CPU "
            "(a checkpoint's own wins)."
        ),
    )
    trust_remote_code: bool = Field(
        default=False,
        description=(
            "Let transformers run the model repository's own code (only for checkpoints you trust)."
        ),
    )


class RayConfig(StrictModel):
    address: str | None = Field(
        default=None,
        description="Ray cluster to join; None means RAY_ADDRESS if set, else a new local Ray.",
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="Only for a new local Ray: CPUs to give it (None: all of this machine's).",
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Environment given to every Ray worker (e.g. DS_ACCELERATOR, HF_HOME).",
    )


class RunSettings(StrictModel):
    """The `run:` section: where a run's stage outputs live (not ray.train.RunConfig)."""

    root: str = Field(
        default="runs",
        description="Root of all runs: a local directory or a URI (file://, s3://, gs://).",
    )
    name: str = Field(
        default="demo",
        description=(
            "The run's name: its outputs are under <root>/<name>/ (rewrite/, prepared/, "
            "train/, tune/, eval/, report.html)."
        ),
    )

    def stage_dir(self, stage: str) -> str:
        return f"{self.root.rstrip('/')}/{self.name}/{stage}"


class PipelineConfig(StrictModel):
    run: RunSettings = Field(default_factory=RunSettings)
    ray: RayConfig = Field(default_factory=RayConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    rewrite: RewriteConfig = Field(default_factory=RewriteConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    mixture: MixtureSpec = Field(default_factory=MixtureSpec)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _trial_batch(self) -> PipelineConfig:
        if self.tune.trial_num_workers is not None:
            trial_grad_accum(self.train, self.tune.trial_num_workers)  # raises naming both
        return self


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and every bad field."""


def _presets_dir() -> Path:
    return Path(str(resources.files("medbase_ray") / "presets"))


def preset_names() -> list[str]:
    """The shipped presets: the YAML files of `medbase_ray/presets/`, sorted."""
    return sorted(p.stem for p in _presets_dir().glob("*.yaml"))


PRESETS = tuple(preset_names())


def preset_path(name: str) -> Path:
    path = _presets_dir() / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name!r}; shipped presets: {', '.join(PRESETS)}")
    return path


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.lr=2e-5` -> (["train", "lr"], 2e-05). The value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form section.field=value")
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return data


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}: {err.error_count()} problem(s)"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  - {field}: {e['msg']}{shown}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    preset: str | None = None,
) -> PipelineConfig:
    """Load a pipeline config from a YAML file (or a shipped preset), apply overrides.

    Raises ConfigError naming the file and each invalid field; nothing else runs first.
    """
    if path is not None and preset is not None:
        raise ConfigError("give either a config file or a preset, not both")
    source_path = Path(path) if path is not None else preset_path(preset or "tiny")
    try:
        text = source_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {source_path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {source_path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {source_path} must be a mapping, got {type(data).__name__}")
    apply_overrides(data, overrides or [])
    source = str(source_path) + (f" (with overrides {overrides})" if overrides else "")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML: written beside every stage output."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
