"""Fixtures of the train tests: bundled conversations prepared into short packed rows.

Runs are kept to a handful of steps of 128-token rows so that tests/train stays within
its budget on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from medbase_ray.config import PipelineConfig, load_config

SEQ_LEN = 128  # as the shared `prepared_dir` (tests/conftest.py) is prepared


def make_config(tmp: Path, *overrides: str) -> PipelineConfig:
    """The tiny preset, shrunk for tests; `overrides` as on the command line."""
    return load_config(
        preset="tiny",
        overrides=[
            f"run.root={tmp}",
            "run.name=t",
            f"prepare.seq_len={SEQ_LEN}",
            "train.micro_batch_size=2",
            "train.lr=3e-3",  # a few steps must move the loss visibly
            "train.grad_accum_steps=1",
            "train.warmup_ratio=0.1",
            "train.log_steps=1",
            "train.keep_last=2",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def make_cfg():
    """`make_cfg(tmp_path, "train.zero_stage=3", ...)`: a test config."""
    return make_config


@pytest.fixture(scope="session")
def packed_rows(prepared_dir) -> pa.Table:
    """The mixture's packed rows, in its deterministic order."""
    import ray

    from medbase_ray.prepare.config import MixtureSpec
    from medbase_ray.prepare.pipeline import resolve_mixture

    dataset, _ = resolve_mixture(prepared_dir, MixtureSpec())
    return pa.concat_tables(ray.get(dataset.to_arrow_refs()))


@pytest.fixture(scope="session")
def local_rows(tiny_dir) -> pa.Table:
    """Packed rows of bundled conversations made in this process, without Ray (the
    prepare stage's pure functions): for the tests of the loop alone."""
    from medbase_ray.corpus.readers import read_conversations, sample_dir
    from medbase_ray.models.loading import load_tokenizer
    from medbase_ray.prepare.stream import pack_conversations

    tokenizer = load_tokenizer(str(tiny_dir))
    conversations, _ = read_conversations(sample_dir() / "apollo")
    return pack_conversations(tokenizer, [c["turns"] for c in conversations[:120]], SEQ_LEN)
