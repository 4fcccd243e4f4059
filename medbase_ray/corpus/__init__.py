"""Corpus formats: readers, writers, the language registry and the bundled sample data."""

from medbase_ray.corpus.languages import LANGUAGES, language_of_source, looks_like_language
from medbase_ray.corpus.readers import (
    read_conversations,
    read_eval_items,
    read_raw_texts,
    read_records,
    sample_dir,
)
from medbase_ray.corpus.rejects import CorpusError, ReadCounts, Reject, RejectSink

__all__ = [
    "LANGUAGES",
    "CorpusError",
    "ReadCounts",
    "Reject",
    "RejectSink",
    "language_of_source",
    "looks_like_language",
    "read_conversations",
    "read_eval_items",
    "read_raw_texts",
    "read_records",
    "sample_dir",
]
