"""Packing: samples -> fixed-length rows of one source.

A packer takes sample lengths (each <= seq_len) and returns bins: lists of sample
indices whose lengths sum to <= seq_len. Every index appears in exactly one bin.

- `pack_best_fit`: best-fit decreasing over the samples given (one bounded window):
  longest first, each into the open row it fills most tightly. Least padding.
- `pack_next_fit`: Apollo's greedy in order: append while it fits, else start a new row.
- `pack_none`: one sample per row.

`assemble_rows` lays the bins out as rows. `position_ids` restart at 0 for each sample:
transformers builds the block-diagonal mask from them (with no attention_mask and
use_cache=False), so samples of a row do not attend to each other. Padding goes at the
end of a row as one more pseudo-sample: pad ids, labels -100, position_ids 0, 1, 2...
It attends only to itself, real tokens come before it, and it carries no loss.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import numpy as np

from medbase_ray.prepare.tokenization import IGNORE_INDEX

Bins = list[list[int]]


def _check(lengths: Sequence[int], seq_len: int) -> None:
    for i, n in enumerate(lengths):
        if not 0 < n <= seq_len:
            raise ValueError(f"sample {i} has length {n}, expected 1..seq_len ({seq_len})")


def pack_best_fit(lengths: Sequence[int], seq_len: int) -> Bins:
    """Best-fit decreasing: O(n log n) with the open rows kept sorted by space left."""
    _check(lengths, seq_len)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: Bins = []
    # (space left, bin index), sorted; full rows leave the list.
    open_rows: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(open_rows, (n, -1))
        if k < len(open_rows):
            space, b = open_rows.pop(k)
            bins[b].append(i)
            if space - n > 0:
                bisect.insort(open_rows, (space - n, b))
        else:
            bins.append([i])
            if seq_len - n > 0:
                bisect.insort(open_rows, (seq_len - n, len(bins) - 1))
    return bins


def pack_next_fit(lengths: Sequence[int], seq_len: int) -> Bins:
    """Apollo's packing: samples in order, a new row whenever the next does not fit."""
    _check(lengths, seq_len)
    bins: Bins = []
    used = seq_len + 1  # forces a first row
    for i, n in enumerate(lengths):
        if used + n > seq_len:
            bins.append([])
            used = 0
        bins[-1].append(i)
        used += n
    return bins


def pack_none(lengths: Sequence[int], seq_len: int) -> Bins:
    _check(lengths, seq_len)
    return [[i] for i in range(len(lengths))]


PACKERS: dict[str, Callable[[Sequence[int], int], Bins]] = {
    "best_fit": pack_best_fit,
    "next_fit": pack_next_fit,
    "none": pack_none,
}


def pack_in_windows(
    lengths: Sequence[int], seq_len: int, packing: str, window: int | None = None
) -> Bins:
    """Pack with `packing`, `window` samples at a time (best_fit's bounded sort).

    The rows of a window that could still take one of its samples are not closed: their
    samples join the next window, so only the last window leaves part-empty rows.
    next_fit and none are streaming already and pack everything in one go.
    """
    packer = PACKERS[packing]
    n = len(lengths)
    if packing != "best_fit" or not window or n <= window:
        return packer(lengths, seq_len)
    bins: Bins = []
    carry: list[int] = []
    for start in range(0, n, window):
        members = carry + list(range(start, min(start + window, n)))
        local = packer([lengths[i] for i in members], seq_len)
        is_last = start + window >= n
        smallest = min(lengths[i] for i in members)
        carry = []
        for b in local:
            rows = [members[j] for j in b]
            if not is_last and seq_len - sum(lengths[i] for i in rows) >= smallest:
                carry += rows
            else:
                bins.append(rows)
    return bins


def assemble_rows(
    input_ids: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    bins: Bins,
    seq_len: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """Bins of samples -> rows: input_ids, labels, position_ids ([rows, seq_len] int32),
    n_real_tokens and n_samples ([rows] int32)."""
    rows = len(bins)
    out_ids = np.full((rows, seq_len), pad_id, dtype=np.int32)
    out_labels = np.full((rows, seq_len), IGNORE_INDEX, dtype=np.int32)
    out_pos = np.zeros((rows, seq_len), dtype=np.int32)
    n_real = np.zeros(rows, dtype=np.int32)
    n_samples = np.zeros(rows, dtype=np.int32)
    ramp = np.arange(seq_len, dtype=np.int32)
    for r, members in enumerate(bins):
        at = 0
        for i in members:
            n = len(input_ids[i])
            out_ids[r, at : at + n] = input_ids[i]
            out_labels[r, at : at + n] = labels[i]
            out_pos[r, at : at + n] = ramp[:n]
            at += n
        if at > seq_len:
            raise ValueError(f"bin {r} holds {at} tokens > seq_len {seq_len}")
        out_pos[r, at:] = ramp[: seq_len - at]
        n_real[r] = at
        n_samples[r] = len(members)
    return {
        "input_ids": out_ids,
        "labels": out_labels,
        "position_ids": out_pos,
        "n_real_tokens": n_real,
        "n_samples": n_samples,
    }


def split_samples(
    input_ids: np.ndarray, labels: np.ndarray, position_ids: np.ndarray, n_real_tokens: int
) -> list[tuple[list[int], list[int]]]:
    """The samples of one packed row, back as (input_ids, labels): the inverse of packing
    (used by tests and checks; padding is not a sample)."""
    starts = [i for i in range(n_real_tokens) if position_ids[i] == 0] + [n_real_tokens]
    return [
        (input_ids[a:b].tolist(), labels[a:b].tolist())
        for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]
