"""Tokenization with loss masks: conversations -> (input_ids, labels), in batches.

Each segment of the chat format is encoded on its own (as Apollo does) and the ids are
concatenated, so the labels are exactly the trained segments' tokens: no offsets to
map back, and nothing of a prompt can leak into the labels. A batch of conversations is
one call of the fast tokenizer over all their segments (Rust, no Python per sample).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medbase_ray.prepare.chat_format import ChatFormatError, conversation_segments

IGNORE_INDEX = -100  # labels that carry no loss (PyTorch's cross-entropy ignore_index)


class BackendTokenizer:
    """A fast tokenizer's Rust core and its end-of-text token: all that the apollo
    format needs. Workers build it from the driver's tokenizer JSON, so they encode
    exactly as the driver does without importing transformers (seconds per worker)."""

    def __init__(self, tokenizer_json: str, eos_token: str | None) -> None:
        from tokenizers import Tokenizer

        self.backend_tokenizer = Tokenizer.from_str(tokenizer_json)
        self.eos_token = eos_token


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens added; one batched call."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        # The Rust tokenizer without offsets: what `tokenizer(texts)` does, minus the
        # offset computation and the Python BatchEncoding it builds around it.
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]


def join_segments(
    segment_ids: Sequence[Sequence[int]], trained: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate segment ids; labels are the ids of trained segments, else -100.

    The first label is always -100: no token predicts a sample's first token, and in a
    packed row it would otherwise be predicted from the previous sample.
    """
    input_ids = np.fromiter(
        (t for seg in segment_ids for t in seg), dtype=np.int32, count=sum(map(len, segment_ids))
    )
    labels = np.full(len(input_ids), IGNORE_INDEX, dtype=np.int32)
    start = 0
    for seg, is_trained in zip(segment_ids, trained, strict=True):
        if is_trained:
            labels[start : start + len(seg)] = input_ids[start : start + len(seg)]
        start += len(seg)
    if len(labels):
        labels[0] = IGNORE_INDEX
    return input_ids, labels


def tokenize_conversation(
    tokenizer, turns: Sequence[str], chat_format: str = "apollo"
) -> tuple[list[int], list[int]]:
    """One conversation -> (input_ids, labels), labels -100 outside assistant spans."""
    segments = conversation_segments(tokenizer, turns, chat_format)
    ids, labels = join_segments(
        encode_texts(tokenizer, [t for t, _ in segments]), [tr for _, tr in segments]
    )
    return ids.tolist(), labels.tolist()


@dataclass
class TokenizedSample:
    """A tokenized conversation, or the reason it cannot be used (`reject` set)."""

    input_ids: np.ndarray
    labels: np.ndarray
    truncated: bool = False
    reject: tuple[str, str] | None = None  # (field, reason)
    dropped: bool = False  # over-long (a reject that the manifest counts apart)


def fit_to_seq_len(
    input_ids: np.ndarray, labels: np.ndarray, seq_len: int, overlong: str
) -> TokenizedSample:
    """Apply the over-long policy: `truncate` keeps the head, `drop` rejects the sample.

    A sample whose labels are all -100 within seq_len teaches nothing and is dropped
    either way (a first question longer than seq_len).
    """
    n = len(input_ids)
    if n > seq_len:
        if overlong == "drop":
            return TokenizedSample(
                input_ids[:0],
                labels[:0],
                reject=("turns", f"over-long: {n} tokens > seq_len {seq_len} (overlong=drop)"),
                dropped=True,
            )
        input_ids, labels = input_ids[:seq_len], labels[:seq_len]
    if not (labels != IGNORE_INDEX).any():
        return TokenizedSample(
            input_ids[:0],
            labels[:0],
            reject=("turns", f"no assistant token within seq_len {seq_len} ({n} tokens)"),
            dropped=True,
        )
    return TokenizedSample(input_ids, labels, truncated=n > seq_len)


def tokenize_conversations(
    tokenizer,
    conversations: Sequence[Sequence[str]],
    chat_format: str,
    seq_len: int,
    overlong: str = "truncate",
) -> list[TokenizedSample]:
    """A batch of conversations -> one TokenizedSample each (same order).

    A conversation the chat format cannot render is rejected with the reason; the
    others are encoded in one call of the tokenizer.
    """
    texts: list[str] = []
    layout: list[list[bool] | tuple[str, str]] = []
    for turns in conversations:
        try:
            segments = conversation_segments(tokenizer, turns, chat_format)
        except ChatFormatError as exc:
            layout.append(("turns", str(exc)))
            continue
        texts.extend(t for t, _ in segments)
        layout.append([tr for _, tr in segments])
    ids = encode_texts(tokenizer, texts)
    # The whole batch as one flat array: segment lengths, trained flags and sample
    # boundaries turn into labels with a few numpy calls instead of a loop per token.
    seg_lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(
        itertools.chain.from_iterable(ids), dtype=np.int32, count=int(seg_lengths.sum())
    )
    trained = np.fromiter(
        (tr for item in layout if isinstance(item, list) for tr in item), dtype=bool, count=len(ids)
    )
    flat_labels = np.where(np.repeat(trained, seg_lengths), flat, IGNORE_INDEX).astype(np.int32)
    seg_ends = np.cumsum(seg_lengths)
    out: list[TokenizedSample] = []
    seg = 0
    empty = np.zeros(0, dtype=np.int32)
    for item in layout:
        if isinstance(item, tuple):
            out.append(TokenizedSample(empty, empty, reject=item))
            continue
        start = int(seg_ends[seg - 1]) if seg else 0
        seg += len(item)
        end = int(seg_ends[seg - 1]) if seg else 0
        labels = flat_labels[start:end]
        if len(labels):
            labels[0] = IGNORE_INDEX  # as join_segments: never predicted, never leaked
        out.append(fit_to_seq_len(flat[start:end], labels, seq_len, overlong))
    return out


def worker_tokenizer_spec(tokenizer, path: str, trust_remote_code: bool, chat_format: str) -> dict:
    """What a Ray worker needs to rebuild the tokenizer: the Rust tokenizer's JSON for
    the apollo format (no transformers import there), else the path to load it from."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if chat_format == "apollo" and backend is not None:
        return {"json": backend.to_str(), "eos_token": tokenizer.eos_token}
    return {"path": path, "trust_remote_code": trust_remote_code}


_TOKENIZERS: dict[int, Any] = {}


def tokenizer_from_spec(spec: dict) -> Any:
    """The tokenizer of a worker_tokenizer_spec, built once per process."""
    key = hash(spec.get("json") or spec["path"])
    if key not in _TOKENIZERS:
        if "json" in spec:
            _TOKENIZERS[key] = BackendTokenizer(spec["json"], spec["eos_token"])
        else:
            from medbase_ray.models.loading import load_tokenizer

            _TOKENIZERS[key] = load_tokenizer(
                spec["path"], trust_remote_code=spec["trust_remote_code"]
            )
    return _TOKENIZERS[key]
