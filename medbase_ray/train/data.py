"""Training data: the mixed packed rows of a prepared directory, as a Ray Dataset.

Refuses rows prepared for another tokenizer, chat format or sequence length: their
token ids would mean nothing to the model (the manifest's fingerprint says so).
"""

from __future__ import annotations

import logging
from typing import Any

from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.records import PACKED_ROW_SCHEMA
from medbase_ray.models.checkpoint_info import resolve_model_settings
from medbase_ray.models.loading import load_tokenizer
from medbase_ray.prepare.config import MixtureSpec
from medbase_ray.prepare.manifest import check_fingerprint, read_manifest
from medbase_ray.prepare.pipeline import resolve_mixture

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("input_ids", "labels", "position_ids", "n_real_tokens")


def check_prepared(cfg: PipelineConfig, prepared_dir: str, tokenizer) -> dict:
    """The manifest of `prepared_dir`, if it was prepared for this tokenizer and chat
    format (else FingerprintMismatch, saying what differs). No Ray needed."""
    manifest = read_manifest(prepared_dir)
    chat_format = cfg.model.chat_format or resolve_model_settings(cfg.model).chat_format
    check_fingerprint(manifest, tokenizer, chat_format)
    return manifest


def load_prepared(cfg: PipelineConfig, prepared_dir: str, tokenizer) -> tuple[Any, dict]:
    """(Dataset of the mixture of `prepared_dir`, mixture report), fingerprint checked."""
    check_prepared(cfg, prepared_dir, tokenizer)
    dataset, report = resolve_mixture(prepared_dir, cfg.mixture)
    check_columns(dataset.schema().names, prepared_dir)
    return dataset, report


def check_columns(names: list[str], where: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        expected = ", ".join(PACKED_ROW_SCHEMA.names)
        raise ValueError(
            f"{where}: training rows lack column(s) {missing}; expected packed rows ({expected})"
        )


def load_dev_data(cfg: PipelineConfig, prepared_dir: str):
    """Every row of a prepared directory (its sources in proportion), for the dev loss."""
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    proportional = MixtureSpec(seed=cfg.mixture.seed)
    dataset, _ = load_prepared(
        cfg.model_copy(update={"mixture": proportional}), prepared_dir, tokenizer
    )
    return dataset
