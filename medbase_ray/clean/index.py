"""The benchmark's n-gram index and the contamination check of a batch (no Ray).

    index = build_index(items, ngram_words=13, min_words=8, ngram_chars=20, min_chars=12)
    matches = index.find(texts, languages)     # one list of Match per text

Each benchmark field (question, options' texts, context) of at least n tokens gives its
n-grams; a field of `min` to n-1 tokens gives itself, whole (so a short exam question is
found, while "Bone marrow" alone flags nothing). A record is checked at n and at every
whole-field length present, in the record's own mode (words or characters).

The index is a sorted uint64 array of gram hashes plus a 2^24-bit prefilter: most grams
of a training record are in no benchmark item and are dismissed by one lookup.
Complexity per batch: O(tokens x gram lengths), all numpy after tokenisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medbase_ray.clean.text import CHARS, WORDS, gram_hashes, normalize, tokens, uses_chars
from medbase_ray.corpus.records import parse_options

FIELDS = ("question", "options", "context")
_PREFILTER_BITS = 24


@dataclass(frozen=True)
class Match:
    """One benchmark n-gram found in a record."""

    item_id: str
    field: str
    ngram: str
    position: int  # token position in the record


@dataclass
class BenchmarkIndex:
    item_ids: list[str]
    seq_item: np.ndarray  # (n_seq,) item index of each indexed field
    seq_field: np.ndarray  # (n_seq,) index into FIELDS
    seq_text: list[str]  # normalised text of each indexed field
    seq_mode: np.ndarray  # WORDS or CHARS
    vocab: pa.Array  # every benchmark token, its id = position + 1
    hashes: np.ndarray  # sorted unique gram hashes (uint64)
    entry_seq: np.ndarray  # per hash: the field sequence of its first occurrence
    entry_pos: np.ndarray
    entry_len: np.ndarray
    lengths: dict[int, list[int]]  # mode -> gram lengths to check in a record
    prefilter: np.ndarray  # bool (2^24,): some hash starts with these 24 bits
    char_languages: frozenset[str]

    @property
    def n_grams(self) -> int:
        return len(self.hashes)

    def find(self, texts: list[str], languages: list[str | None]) -> list[list[Match]]:
        """The benchmark grams in each text (in order of position; [] for a clean one)."""
        return self.find_normalized([normalize(t) for t in texts], languages)

    def find_normalized(self, norm: list[str], languages: list[str | None]) -> list[list[Match]]:
        """`find` on texts already normalised (text.normalize)."""
        found: list[list[Match]] = [[] for _ in norm]
        for mode in (WORDS, CHARS):
            rows = [
                i
                for i, (t, lang) in enumerate(zip(norm, languages, strict=True))
                if uses_chars(lang, t, self.char_languages) == (mode == CHARS)
            ]
            if not rows or not self.lengths.get(mode):
                continue
            ids, offsets = self._token_ids([tokens(norm[i], mode == CHARS) for i in rows])
            # Most grams are in no benchmark item: the prefilter drops them before their
            # positions are worked out and before the binary search.
            h, seq, pos = gram_hashes(ids, offsets, self.lengths[mode], mode, self._may_hold)
            where = np.searchsorted(self.hashes, h)
            where[where == len(self.hashes)] = 0
            hit = self.hashes[where] == h if len(self.hashes) else np.zeros(len(h), bool)
            for entry, s, p in zip(where[hit], seq[hit], pos[hit], strict=True):
                found[rows[s]].append(self._match(int(entry), int(p)))
        for matches in found:
            matches.sort(key=lambda m: m.position)
        return found

    def _may_hold(self, h: np.ndarray) -> np.ndarray:
        return self.prefilter[h >> np.uint64(64 - _PREFILTER_BITS)]

    @cached_property
    def _ids(self) -> dict[str, int]:
        """Token -> id, made where `find` first runs (a Ray worker), not pickled with
        the index: a dict lookup per token costs less than building an Arrow array."""
        return {t: i + 1 for i, t in enumerate(self.vocab.to_pylist())}

    def _token_ids(self, seqs: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (vocabulary index + 1; 0 = not a benchmark token) and offsets."""
        offsets = np.zeros(len(seqs) + 1, np.int64)
        np.cumsum([len(s) for s in seqs], out=offsets[1:])
        get = self._ids.get
        ids = np.fromiter((get(t, 0) for s in seqs for t in s), np.uint64, int(offsets[-1]))
        return ids, offsets

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_ids"}

    def _match(self, entry: int, position: int) -> Match:
        s = int(self.entry_seq[entry])
        by_chars = self.seq_mode[s] == CHARS
        toks = tokens(self.seq_text[s], by_chars)
        start, length = int(self.entry_pos[entry]), int(self.entry_len[entry])
        gram = ("" if by_chars else " ").join(toks[start : start + length])
        field = FIELDS[int(self.seq_field[s])]
        return Match(self.item_ids[int(self.seq_item[s])], field, gram, position)


def _token_ids(seqs: list[list[str]], vocab: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (vocabulary index + 1; 0 = not a benchmark token) and sequence offsets."""
    offsets = np.zeros(len(seqs) + 1, np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    flat = pa.array([t for s in seqs for t in s], pa.string())
    idx = pc.index_in(flat, value_set=vocab).fill_null(-1)
    return (idx.to_numpy().astype(np.int64) + 1).astype(np.uint64), offsets


def item_fields(item: dict, fields: Iterable[str]) -> list[tuple[str, str]]:
    """(field, text) of an eval item: the question, the options' texts (letters
    dropped: "(A)" is in every item), the context when there is one."""
    out = []
    for field in fields:
        value = item.get(field)
        if not value:
            continue
        if field == "options":
            value = "\n".join(parse_options(value).values())
        out.append((field, value))
    return out


def build_index(
    items: list[dict],
    ngram_words: int = 13,
    min_words: int = 8,
    ngram_chars: int = 20,
    min_chars: int = 12,
    char_languages: Iterable[str] = ("zh",),
    fields: Iterable[str] = FIELDS,
) -> BenchmarkIndex:
    """The index of `items` (eval item records: id, language, question, options, ...)."""
    char_langs = frozenset(char_languages)
    n_of = {WORDS: (ngram_words, min_words), CHARS: (ngram_chars, min_chars)}
    seq_item, seq_field, seq_text, seq_mode, seq_tokens = [], [], [], [], []
    for i, item in enumerate(items):
        for field, value in item_fields(item, fields):
            text = normalize(value)
            mode = CHARS if uses_chars(item.get("language"), text, char_langs) else WORDS
            toks = tokens(text, mode == CHARS)
            if len(toks) < n_of[mode][1]:
                continue  # too short to say anything only this item says
            seq_item.append(i)
            seq_field.append(FIELDS.index(field))
            seq_text.append(text)
            seq_mode.append(mode)
            seq_tokens.append(toks)
    vocab = pc.unique(pa.array([t for s in seq_tokens for t in s], pa.string()))
    all_h, all_seq, all_pos, all_len = [], [], [], []
    lengths: dict[int, list[int]] = {}
    for mode, (n, _) in n_of.items():
        # Group the fields by the gram length they give: n, or their own (short) length.
        by_len: dict[int, list[int]] = {}
        for s, toks in enumerate(seq_tokens):
            if seq_mode[s] == mode:
                by_len.setdefault(min(len(toks), n), []).append(s)
        lengths[mode] = sorted(by_len)
        for k, members in by_len.items():
            ids, offsets = _token_ids([seq_tokens[s] for s in members], vocab)
            h, seq, pos = gram_hashes(ids, offsets, [k], mode)
            all_h.append(h)
            all_seq.append(np.asarray(members, np.int64)[seq])
            all_pos.append(pos)
            all_len.append(np.full(len(h), k, np.int64))
    h = np.concatenate(all_h) if all_h else np.zeros(0, np.uint64)
    hashes, first = np.unique(h, return_index=True)
    cat = (lambda parts: np.concatenate(parts)[first]) if all_h else (lambda _: np.zeros(0))
    prefilter = np.zeros(1 << _PREFILTER_BITS, bool)
    prefilter[hashes >> np.uint64(64 - _PREFILTER_BITS)] = True
    return BenchmarkIndex(
        item_ids=[str(it["id"]) for it in items],
        seq_item=np.asarray(seq_item, np.int64),
        seq_field=np.asarray(seq_field, np.int8),
        seq_text=seq_text,
        seq_mode=np.asarray(seq_mode, np.int8),
        vocab=vocab,
        hashes=hashes,
        entry_seq=cat(all_seq),
        entry_pos=cat(all_pos),
        entry_len=cat(all_len),
        lengths=lengths,
        prefilter=prefilter,
        char_languages=char_langs,
    )
