"""The prepare stage: chat format, tokenization with loss masks, packing, mixture.

Pure core (no Ray): chat_format, tokenization, packing, inputs, stream, output,
manifest, mixture (files go through the shared medbase_ray.storage).
Ray layer: pipeline (`run_prepare`, `resolve_mixture`).
"""

from medbase_ray.prepare.config import MixtureSpec, PrepareConfig, load_mixture_spec
from medbase_ray.prepare.manifest import (
    FingerprintMismatch,
    check_fingerprint,
    fingerprint,
    read_manifest,
)
from medbase_ray.prepare.mixture import load_sources, plan_mixture
from medbase_ray.prepare.packing import pack_best_fit, pack_next_fit, pack_none
from medbase_ray.prepare.tokenization import IGNORE_INDEX, tokenize_conversation


def run_prepare(cfg):
    """Prepare conversations into packed rows (see medbase_ray.prepare.pipeline)."""
    from medbase_ray.prepare.pipeline import run_prepare as _run

    return _run(cfg)


def resolve_mixture(prepared_dir, spec):
    """(ray.data.Dataset of packed rows, report) (see medbase_ray.prepare.pipeline)."""
    from medbase_ray.prepare.pipeline import resolve_mixture as _resolve

    return _resolve(prepared_dir, spec)


__all__ = [
    "IGNORE_INDEX",
    "FingerprintMismatch",
    "MixtureSpec",
    "PrepareConfig",
    "check_fingerprint",
    "fingerprint",
    "load_mixture_spec",
    "load_sources",
    "pack_best_fit",
    "pack_next_fit",
    "pack_none",
    "plan_mixture",
    "read_manifest",
    "resolve_mixture",
    "run_prepare",
    "tokenize_conversation",
]
