"""What a checkpoint says about itself, and the settings serve, eval and resume use.

Every checkpoint train writes carries `medbase_config.yaml`, the resolved pipeline config
it was trained with (as litgpt's checkpoints carry their prompt style). Serve, eval and
`train --resume` take the chat format, dtype, sequence length and tokenizer from it
when the user's config leaves them unset, and refuse a setting that contradicts it:

    settings = resolve_model_settings(cfg.model, "runs/tiny/train/final", cfg.prepare.seq_len)
    settings.chat_format, settings.dtype, settings.seq_len, settings.tokenizer_path

"Unset" is the config class's default: `model.chat_format: null` (the checkpoint's,
else Apollo's format), `model.dtype: auto`, a `seq_len` of None. A directory without
the file (a Hugging Face checkpoint from elsewhere) gives Apollo's format and `auto`.
The checkpoint may be a local directory or a URI (read through medbase_ray.storage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medbase_ray import storage
from medbase_ray.config import ModelConfig
from medbase_ray.models.chat import DEFAULT_CHAT_FORMAT
from medbase_ray.models.loading import resolve_model_path

CHECKPOINT_CONFIG = "medbase_config.yaml"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


class SettingsConflict(ValueError):
    """The user's config contradicts what the checkpoint was trained with."""


@dataclass(frozen=True)
class ModelSettings:
    """The resolved settings of one model directory."""

    path: str  # the model directory ("tiny" resolved to the embedded one)
    chat_format: str  # "apollo" or "template"
    dtype: str  # "auto", "float32", "bfloat16", "float16"
    seq_len: int | None  # what it was trained on (None: unknown)
    tokenizer_path: str  # where its tokenizer loads from
    from_checkpoint: tuple[str, ...] = field(default=())  # the fields its metadata gave


def read_checkpoint_config(path: str | Path) -> dict[str, Any] | None:
    """The pipeline config a checkpoint (a path or URI) was trained with (None: not one
    of ours, or a hub name)."""
    file = storage.join(str(path), CHECKPOINT_CONFIG)
    if not storage.exists(file):
        return None
    data = yaml.safe_load(storage.read_bytes(file).decode("utf-8"))
    return data if isinstance(data, dict) else None


def resolve_model_settings(
    model: ModelConfig, path: str | None = None, seq_len: int | None = None
) -> ModelSettings:
    """Settings for serving, evaluating or resuming the model at `path` (default
    `model.name_or_path`): the user's where set, else the checkpoint's, else defaults.

    seq_len: the caller's sequence length when the user set one (None: unset).
    Raises SettingsConflict naming both values when a set value differs from the
    checkpoint's.
    """
    local = resolve_model_path(path or model.name_or_path)
    saved = read_checkpoint_config(local) or {}
    saved_model = saved.get("model") or {}
    saved_values = {
        "chat_format": saved_model.get("chat_format") or (DEFAULT_CHAT_FORMAT if saved else None),
        "dtype": saved_model.get("dtype") if saved_model.get("dtype") != "auto" else None,
        "seq_len": (saved.get("prepare") or {}).get("seq_len"),
    }
    asked = {
        "chat_format": model.chat_format,
        "dtype": model.dtype if model.dtype != "auto" else None,
        "seq_len": seq_len,
    }
    names = {"chat_format": "model.chat_format", "dtype": "model.dtype", "seq_len": "seq_len"}
    conflicts = [
        f"{names[k]} is {asked[k]!r} but {local} was trained with {saved_values[k]!r}"
        for k in asked
        if asked[k] is not None and saved_values[k] is not None and asked[k] != saved_values[k]
    ]
    if conflicts:
        raise SettingsConflict(
            "; ".join(conflicts) + f" (from its {CHECKPOINT_CONFIG}): leave the setting "
            "unset to use the checkpoint's, or set it to match"
        )
    resolved = {k: asked[k] if asked[k] is not None else saved_values[k] for k in asked}
    tokenizer_path = local
    if not any(
        storage.exists(storage.join(local, f)) for f in _TOKENIZER_FILES
    ) and saved_model.get("name_or_path"):
        tokenizer_path = resolve_model_path(saved_model["name_or_path"])
    return ModelSettings(
        path=local,
        chat_format=resolved["chat_format"] or DEFAULT_CHAT_FORMAT,
        dtype=resolved["dtype"] or "auto",
        seq_len=resolved["seq_len"],
        tokenizer_path=tokenizer_path,
        from_checkpoint=tuple(k for k in asked if asked[k] is None and saved_values[k] is not None),
    )
