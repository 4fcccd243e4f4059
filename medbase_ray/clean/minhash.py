"""MinHash signatures over character shingles and their LSH band keys (no Ray).

    sigs = minhash_signatures(texts, num_perm=128, shingle_chars=5, seed=0)  # (n, 128) uint32
    bands, rows = lsh_params(0.8, 128)          # 16 bands of 8 rows for Jaccard 0.8
    keys = band_keys(sigs, bands, rows)         # (n, bands) uint64

Shingles are the `shingle_chars`-character windows of the text after NFKC, case folding
and whitespace collapsing (text.dedup_text), hashed by the same polynomial hash as the
n-grams, over code points: no tokenizer, every script alike. Permutations are
`(a * x + b) mod 2^32` with odd `a` over the mixed 32-bit shingle hash. The batch is
processed in chunks of 32 permutations x ~16k shingles (2 MiB, in cache).

Two records share a band key with probability 1 - (1 - J^rows)^bands for Jaccard J;
`lsh_params` puts that S-curve so that a pair at the threshold is a candidate with
probability >= 0.9 (0.95 at 0.8 with 128 permutations: 16 bands of 8 rows); candidates
are then checked on their signatures (dedup.verified).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from medbase_ray.clean.text import _mix, dedup_text, gram_hashes

_PERM_CHUNK = 32
_SHINGLE_CHUNK = 16384
_EMPTY = np.uint32(0xFFFFFFFF)


@cache
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**32, num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    b = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a[:, None], b[:, None]


def shingle_hashes(texts: list[str], shingle_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every shingle and the record each belongs to. A text shorter
    than a shingle is one shingle of its own length."""
    return _shingle_hashes([dedup_text(t) for t in texts], shingle_chars)


def _shingle_hashes(norm: list[str], shingle_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """`shingle_hashes` of texts already in dedup form (text.dedup_text)."""
    codes = np.frombuffer("".join(norm).encode("utf-32-le"), np.uint32).astype(np.uint64)
    lens = np.array([len(t) for t in norm], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    h, seq, _ = gram_hashes(codes + np.uint64(1), offsets, [shingle_chars], mode=2)
    short = np.flatnonzero((lens < shingle_chars) & (lens > 0))
    for s in short:  # rare: whole short texts
        hs, _, _ = gram_hashes(
            codes[offsets[s] : offsets[s + 1]] + np.uint64(1),
            np.array([0, lens[s]]),
            [int(lens[s])],
            mode=2,
        )
        h, seq = np.append(h, hs), np.append(seq, s)
    return (_mix(h) >> np.uint64(32)).astype(np.uint32), seq


def minhash_signatures(
    texts: list[str], num_perm: int = 128, shingle_chars: int = 5, seed: int = 0
) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures (all 0xFFFFFFFF for empty text)."""
    return dedup_signatures([dedup_text(t) for t in texts], num_perm, shingle_chars, seed)


def dedup_signatures(
    norm: list[str], num_perm: int = 128, shingle_chars: int = 5, seed: int = 0
) -> np.ndarray:
    """`minhash_signatures` of texts already in dedup form (text.dedup_text)."""
    h, seq = _shingle_hashes(norm, shingle_chars)
    sigs = np.full((len(norm), num_perm), _EMPTY, np.uint32)
    if len(h) == 0:
        return sigs
    if (seq[1:] < seq[:-1]).any():  # only whole short texts come out of order
        order = np.argsort(seq, kind="stable")
        h, seq = h[order], seq[order]
    starts = np.flatnonzero(np.concatenate([[True], seq[1:] != seq[:-1]]))
    present = seq[starts]
    bounds = np.append(starts, len(h))
    a, b = _permutations(num_perm, seed)
    # Records in groups of ~_SHINGLE_CHUNK shingles, permutations _PERM_CHUNK at a time:
    # the (perms, shingles) buffer stays in cache for the multiply, add and min (one
    # buffer over the whole batch was 2x slower, a fresh array per step far slower still).
    buf = np.empty((_PERM_CHUNK, _SHINGLE_CHUNK), np.uint32)
    i = 0
    while i < len(present):
        j = int(np.searchsorted(bounds, bounds[i] + _SHINGLE_CHUNK, side="right")) - 1
        j = min(max(j, i + 1), len(present))  # at least one record, however long
        lo, hi = bounds[i], bounds[j]
        if hi - lo > buf.shape[1]:
            buf = np.empty((_PERM_CHUNK, hi - lo), np.uint32)
        for p in range(0, num_perm, _PERM_CHUNK):
            q = min(p + _PERM_CHUNK, num_perm)
            out = buf[: q - p, : hi - lo]
            np.multiply(a[p:q], h[None, lo:hi], out=out)  # uint32 arithmetic wraps mod 2^32
            np.add(out, b[p:q], out=out)
            sigs[present[i:j], p:q] = np.minimum.reduceat(out, starts[i:j] - lo, axis=1).T
        i = j
    return sigs


def candidate_probability(jaccard: float, bands: int, rows: int) -> float:
    """P(two records of this Jaccard share at least one band key)."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


def lsh_params(threshold: float, num_perm: int, recall: float = 0.9) -> tuple[int, int]:
    """(bands, rows), bands x rows <= num_perm: the most rows per band (the fewest
    candidates below the threshold) that still make a pair at the threshold a candidate
    with probability >= `recall`. Candidates below the threshold cost a signature
    comparison, not a wrong removal: the comparison drops them."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) >= recall:
            return bands, rows
    return num_perm, 1


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: a hash of each band's rows, salted with the band's number."""
    n = sigs.shape[0]
    keys = np.zeros((n, bands), np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            part = sigs[:, band * rows : (band + 1) * rows].astype(np.uint64)
            acc = np.full(n, np.uint64(band + 1) * np.uint64(0x9E3779B97F4A7C15))
            for col in range(rows):
                acc = _mix(acc ^ part[:, col])
            keys[:, band] = acc
    return keys
