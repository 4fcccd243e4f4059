"""What `train --resume` takes from the checkpoint it resumes (no Ray, no training):
chat format, dtype and seq_len where the config sets none; a conflicting setting, or
another model, is refused naming both values."""

from __future__ import annotations

from pathlib import Path

import pytest

from medbase_ray.config import PipelineConfig, dump_config
from medbase_ray.models.checkpoint_info import CHECKPOINT_CONFIG, SettingsConflict
from medbase_ray.train.run import resolve_run_config


def trained_checkpoint(tmp_path: Path) -> str:
    """A checkpoint directory as train writes it, as far as settings go: its config."""
    trained = PipelineConfig.model_validate(
        {
            "model": {"chat_format": "template", "dtype": "bfloat16"},
            "prepare": {"seq_len": 256},
        }
    )
    ckpt = tmp_path / "checkpoint_step_000004"
    ckpt.mkdir()
    (ckpt / CHECKPOINT_CONFIG).write_text(dump_config(trained), encoding="utf-8")
    return str(ckpt)


def test_resume_takes_unset_settings_from_the_checkpoint(tmp_path: Path) -> None:
    ckpt = trained_checkpoint(tmp_path)
    unset = PipelineConfig()  # chat_format None, dtype auto, seq_len not given
    assert unset.model.chat_format is None and "seq_len" not in unset.prepare.model_fields_set
    resolved = resolve_run_config(unset, ckpt)
    assert resolved.model.chat_format == "template"
    assert resolved.model.dtype == "bfloat16"
    assert resolved.prepare.seq_len == 256 != unset.prepare.seq_len
    # The same values set explicitly agree with the checkpoint: accepted as they are.
    same = PipelineConfig.model_validate(
        {"model": {"chat_format": "template", "dtype": "bfloat16"}, "prepare": {"seq_len": 256}}
    )
    assert resolve_run_config(same, ckpt).model == resolved.model


def test_resume_refuses_settings_that_contradict_the_checkpoint(tmp_path: Path) -> None:
    ckpt = trained_checkpoint(tmp_path)
    other = PipelineConfig.model_validate(
        {"model": {"chat_format": "apollo", "dtype": "float32"}, "prepare": {"seq_len": 128}}
    )
    with pytest.raises(SettingsConflict) as err:
        resolve_run_config(other, ckpt)
    message = str(err.value)  # every conflict at once, each with both values
    assert "model.chat_format is 'apollo' but" in message and "'template'" in message
    assert "model.dtype is 'float32'" in message and "'bfloat16'" in message
    assert "seq_len is 128" in message and "256" in message and ckpt in message
    another_model = PipelineConfig.model_validate({"model": {"name_or_path": "/models/other"}})
    with pytest.raises(SettingsConflict, match="'/models/other' but .* trained from 'tiny'"):
        resolve_run_config(another_model, ckpt)


def test_a_fresh_run_writes_the_resolved_chat_format(tmp_path: Path) -> None:
    """Without --resume: the model's own settings (the embedded model names none), so
    config.yaml and every checkpoint say "apollo", not null; seq_len stays the config's."""
    cfg = PipelineConfig.model_validate({"prepare": {"seq_len": 128}})
    resolved = resolve_run_config(cfg, None)
    assert resolved.model.chat_format == "apollo" and resolved.model.dtype == "auto"
    assert resolved.prepare.seq_len == 128
    assert "chat_format: apollo" in dump_config(resolved)
