"""Packing loses and duplicates nothing; position_ids restart per sample."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from medbase_ray.prepare.packing import (
    PACKERS,
    assemble_rows,
    pack_best_fit,
    pack_in_windows,
    pack_next_fit,
    pack_none,
    split_samples,
)
from medbase_ray.prepare.tokenization import IGNORE_INDEX


def random_lengths(seed: int, n: int, seq_len: int) -> list[int]:
    rng = random.Random(seed)
    # Mostly short samples with a long tail, like QA pairs and dialogues.
    return [min(seq_len, max(1, int(rng.lognormvariate(4.5, 0.8)))) for _ in range(n)]


@pytest.mark.parametrize("packing", sorted(PACKERS))
@pytest.mark.parametrize("seed", range(5))
def test_every_sample_in_exactly_one_row(packing: str, seed: int) -> None:
    seq_len = 512
    lengths = random_lengths(seed, 800, seq_len)
    bins = PACKERS[packing](lengths, seq_len)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= seq_len for b in bins)
    assert all(b for b in bins)


def test_next_fit_keeps_order_and_best_fit_pads_less() -> None:
    seq_len = 512
    for seed in range(5):
        lengths = random_lengths(seed, 2000, seq_len)
        nf = pack_next_fit(lengths, seq_len)
        assert [i for b in nf for i in b] == list(range(len(lengths)))
        bf = pack_best_fit(lengths, seq_len)
        lower_bound = -(-sum(lengths) // seq_len)
        assert len(bf) < len(nf)
        # Best-fit decreasing is within a row or two of the bound on such data.
        assert len(bf) <= lower_bound + 2, (len(bf), lower_bound)
        assert pack_none(lengths, seq_len) == [[i] for i in range(len(lengths))]


def test_best_fit_picks_the_tightest_row() -> None:
    # 6 and 5 open two rows (4 and 5 left); 4 goes to the row with exactly 4 left.
    assert pack_best_fit([6, 5, 4], 10) == [[0, 2], [1]]
    # Next-fit in order would need three rows here.
    assert len(pack_next_fit([6, 5, 4, 5], 10)) == 3
    assert pack_best_fit([6, 5, 4, 5], 10) == [[0, 2], [1, 3]]


def test_windows_keep_every_sample_and_carry_part_empty_rows() -> None:
    seq_len = 512
    lengths = random_lengths(7, 3000, seq_len)
    whole = pack_best_fit(lengths, seq_len)
    windowed = pack_in_windows(lengths, seq_len, "best_fit", window=500)
    assert sorted(i for b in windowed for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= seq_len for b in windowed)
    # Carrying the rows that are not full into the next window: hardly more rows than
    # sorting everything at once, and fewer than closing every window on its own.
    closed = [b for a in range(0, 3000, 500) for b in pack_best_fit(lengths[a : a + 500], seq_len)]
    assert len(whole) <= len(windowed) <= len(whole) + 2 < len(closed)
    # next_fit is streaming: windows change nothing.
    assert pack_in_windows(lengths, seq_len, "next_fit", 500) == pack_next_fit(lengths, seq_len)


def test_lengths_out_of_range_are_errors() -> None:
    for packer in PACKERS.values():
        with pytest.raises(ValueError, match="sample 1 has length 11"):
            packer([3, 11], 10)
        with pytest.raises(ValueError, match="length 0"):
            packer([0], 10)


def test_rows_restart_positions_and_pad_without_loss() -> None:
    rng = np.random.default_rng(0)
    seq_len, pad = 64, 7
    lengths = [int(n) for n in rng.integers(1, 40, size=50)]
    ids = [rng.integers(10, 100, size=n).astype(np.int32) for n in lengths]
    labels = [
        np.where(rng.random(n) < 0.5, a, IGNORE_INDEX).astype(np.int32)
        for n, a in zip(lengths, ids, strict=True)
    ]
    bins = pack_best_fit(lengths, seq_len)
    rows = assemble_rows(ids, labels, bins, seq_len, pad)
    assert rows["input_ids"].shape == (len(bins), seq_len)
    seen = collections.Counter()
    for r, members in enumerate(bins):
        n_real = int(rows["n_real_tokens"][r])
        assert n_real == sum(lengths[i] for i in members)
        assert rows["n_samples"][r] == len(members)
        # Padding: pad ids, no loss, positions 0, 1, 2... (one more pseudo-sample).
        assert (rows["input_ids"][r, n_real:] == pad).all()
        assert (rows["labels"][r, n_real:] == IGNORE_INDEX).all()
        assert rows["position_ids"][r, n_real:].tolist() == list(range(seq_len - n_real))
        samples = split_samples(
            rows["input_ids"][r], rows["labels"][r], rows["position_ids"][r], n_real
        )
        assert [len(s[0]) for s in samples] == [lengths[i] for i in members]
        for s_ids, s_labels in samples:
            seen[(tuple(s_ids), tuple(s_labels))] += 1
    expected = collections.Counter(
        (tuple(a.tolist()), tuple(b.tolist())) for a, b in zip(ids, labels, strict=True)
    )
    assert seen == expected
