"""Text normalisation and n-gram hashing, vectorised over a batch (no Ray).

Tokens: NFKC, case folding, punctuation and symbols removed; then words (split on
whitespace) for space-delimited scripts, or characters (whitespace dropped too) for
Chinese and any text without spaces. Changed punctuation and case thus leave the tokens
as they were.

N-gram hashes are polynomial hashes mod 2^64 of token ids, computed from prefix sums
so that any gram length costs two vector operations over the whole batch:

    P[i] = sum_{j<i} id_j * B^j          gram(i, k) = (P[i+k] - P[i]) * B^-i

(B is odd, hence invertible mod 2^64.) Ids are vocabulary indexes + 1 and 0 for a token
outside the vocabulary, so a gram holding an unknown token matches nothing (up to a
64-bit collision). The hash is then mixed with the length and the mode (splitmix64).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from functools import cache

import numpy as np

_BASE = np.uint64(0x9E3779B97F4A7C15 | 1)
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))
WORDS, CHARS = 0, 1


@cache
def _punctuation() -> re.Pattern[str]:
    # Every punctuation (P*) and symbol (S*) code point of the BMP, as one class: the C
    # regex engine then strips them at C speed (Python's \W would also split Hindi
    # words at their vowel signs, which are marks, not letters).
    chars = (chr(c) for c in range(0x10000) if unicodedata.category(chr(c))[0] in "PS")
    return re.compile("[" + "".join(re.escape(c) for c in chars) + "]+")


def fold(text: str) -> str:
    """NFKC + casefold: what both `normalize` and `dedup_text` start from (a batch folds
    each text once and derives both)."""
    return unicodedata.normalize("NFKC", text).casefold()


def strip_punctuation(folded: str) -> str:
    """Punctuation and symbols of a folded text replaced by spaces."""
    return _punctuation().sub(" ", folded)


def normalize(text: str) -> str:
    """NFKC + casefold, punctuation and symbols replaced by spaces."""
    return strip_punctuation(fold(text))


def uses_chars(language: str | None, text: str, char_languages: frozenset[str]) -> bool:
    """Characters for the languages so configured and for text with no spaces at all."""
    return language in char_languages or len(text.split(maxsplit=1)) == 1


def tokens(text: str, by_chars: bool) -> list[str]:
    """The tokens of `text` (already normalised): words, or characters without spaces."""
    words = text.split()
    return list("".join(words)) if by_chars else words


def dedup_text(text: str) -> str:
    """The text exact duplicates are compared on: NFKC, casefolded, whitespace collapsed."""
    return " ".join(fold(text).split())


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 in, uint64 out), so nearby inputs spread out."""
    h = h ^ (h >> np.uint64(30))  # a new array; the rest in place (no temporaries)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def gram_hashes(
    ids: np.ndarray,
    offsets: np.ndarray,
    lengths: list[int],
    mode: int,
    keep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of every gram of the given lengths that lies inside one sequence.

    ids: uint64 token ids of all sequences back to back; offsets: (n_seq + 1,) starts.
    Returns (hashes uint64, sequence index, start position within the sequence), one
    entry per gram; a sequence shorter than a length contributes none of it.
    keep: hashes -> bool mask of those to return (e.g. an index's prefilter), applied
    before positions are worked out.
    """
    total = len(ids)
    if total == 0 or not lengths:
        empty = np.zeros(0, np.uint64)
        return empty, np.zeros(0, np.int64), np.zeros(0, np.int64)
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(total, _BASE, np.uint64))  # B^1 .. B^total
        powers = np.concatenate([[np.uint64(1)], powers])
        inv = np.cumprod(np.full(total, _BASE_INV, np.uint64))
        inv = np.concatenate([[np.uint64(1)], inv])
        prefix = np.concatenate([[np.uint64(0)], np.cumsum(ids * powers[:-1], dtype=np.uint64)])
        seq_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        out_h, out_seq, out_pos = [], [], []
        for k in lengths:
            n = total - k + 1  # grams of length k starting at 0 .. n-1, in one sequence or not
            if n <= 0:
                continue
            # Slices, not gathers: every start's hash, then the mask of those to keep.
            raw = prefix[k : k + n] - prefix[:n]
            raw *= inv[:n]
            raw ^= np.uint64((k << 8 | mode) * 0x2545F4914F6CDD1D % 2**64)
            h = _mix(raw)
            inside = seq_of[:n] == seq_of[k - 1 :]
            if keep is not None:
                inside &= keep(h)
            starts = np.flatnonzero(inside)
            out_h.append(h[starts])
            seq = seq_of[starts]
            out_seq.append(seq)
            out_pos.append(starts - offsets[seq])
    if not out_h:
        empty = np.zeros(0, np.uint64)
        return empty, np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_h), np.concatenate(out_seq), np.concatenate(out_pos)


def stable_hash64(texts: list[str]) -> np.ndarray:
    """A 64-bit hash of each string that is the same in every process (blake2b)."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            for t in texts
        ],
        dtype=np.uint64,
    )
