"""Fixtures of the prepare tests: the embedded tiny tokenizer and bundled conversations."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer(tiny_dir):
    from medbase_ray.models.loading import load_tokenizer

    return load_tokenizer(str(tiny_dir))


@pytest.fixture(scope="session")
def bundled_conversations():
    """Every conversation of the bundled sample (ApolloCorpus layout)."""
    from medbase_ray.corpus.readers import read_conversations, sample_dir

    records, counts = read_conversations(sample_dir() / "apollo")
    assert counts.rejected == 0 and records
    return records
