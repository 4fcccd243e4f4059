"""Where a row's source and language come from when the row does not say (issue 18).

In order: the file stem (ApolloCorpus `{source}_{language}[_{type}].json`, or a member
of `mixTrain.json` named the same way), else the nearest folder named
`{source}_{language}` (Apollo's `guidelines_en/data/1.dev.jsonl`), else the user's
`--source` / `--language`. A row whose language is still unknown is rejected with
`LANGUAGE_HELP`, which says how to give it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medbase_ray.corpus.languages import LANGUAGES

_APOLLO_NAME = re.compile(r"^(?P<source>.+?)_(?P<lang>[a-z]{2})(?:_(?P<type>[A-Za-z]+))?$")
TEXT_TYPES = {"text"}
CONVERSATION_TYPES = {"qa", "dialogue", "conversation", None}

LANGUAGE_HELP = (
    "the language cannot be known: name the file {source}_{language}[_{type}].json, put "
    "it in a folder named {source}_{language}, give each row a 'language', or pass "
    f"--language (one of {', '.join(LANGUAGES)})"
)


@dataclass(frozen=True)
class Origin:
    """Source, language and ApolloCorpus type of a file's rows (None: not known);
    `named`: the name itself carried them (its ids stay `{stem}:{index}`)."""

    source: str | None
    language: str | None
    type: str | None = None
    named: bool = False

    def id_prefix(self, stem: str) -> str:
        """The prefix of the ids of a file's rows: the stem, made unique across folders
        (`guidelines_en/1.dev`) when the stem alone says nothing."""
        if self.named or not self.source:
            return stem
        return f"{self.source}_{self.language or 'xx'}/{stem}"


def parse_apollo_stem(stem: str) -> Origin | None:
    """`medicalBook_en_qa` -> Origin("medicalBook", "en", "qa", named=True); None when the
    stem is not an ApolloCorpus name with a known language."""
    m = _APOLLO_NAME.match(stem)
    if m is None or m["lang"] not in LANGUAGES:
        return None
    return Origin(m["source"], m["lang"], m["type"], named=True)


def origin_of(path: Path, source: str | None = None, language: str | None = None) -> Origin:
    """The origin of the rows of `path`: its stem, else its folders, else the user's."""
    named = parse_apollo_stem(path.stem)
    if named is not None:
        return named
    for folder in path.parents:
        found = parse_apollo_stem(folder.name)
        if found is not None and found.type is None:
            return Origin(found.source, found.language)
    return Origin(source, language)


def member_origin(key: str, fallback: Origin) -> Origin:
    """The origin of the rows of a `mixTrain.json` member (named like a file stem)."""
    return parse_apollo_stem(key) or Origin(fallback.source, fallback.language)


def is_kind(type_: str | None, kind: str) -> bool:
    """Whether an ApolloCorpus type holds `kind` ("text" or "conversation") rows."""
    return type_ in (TEXT_TYPES if kind == "text" else CONVERSATION_TYPES)
