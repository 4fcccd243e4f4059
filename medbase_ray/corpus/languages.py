"""Language and source registry (data in languages.yaml)."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml


@cache
def _registry() -> dict:
    text = (resources.files("medbase_ray.corpus") / "languages.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def languages() -> dict[str, str]:
    """ISO 639-1 code -> English name, for the six languages of the project."""
    return {code: v["name"] for code, v in _registry()["languages"].items()}


LANGUAGES: tuple[str, ...] = tuple(languages())


def source_languages() -> dict[str, str]:
    """XMedBench source name -> language code."""
    return dict(_registry()["sources"])


def language_of_source(source: str, overrides: dict[str, str] | None = None) -> str | None:
    """Language of an XMedBench source; `overrides` first, then the registry."""
    if overrides and source in overrides:
        return overrides[source]
    return _registry()["sources"].get(source)


# Unicode ranges of the scripts used by the script check.
_SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "han": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF)),
    "arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF)),
    "devanagari": ((0x0900, 0x097F),),
}


def script_fraction(text: str, script: str) -> float:
    """Fraction of the letters of `text` that are in `script` (0 when no letters)."""
    ranges = _SCRIPT_RANGES[script]
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    inside = sum(any(lo <= ord(c) <= hi for lo, hi in ranges) for c in letters)
    return inside / len(letters)


def looks_like_language(text: str, language: str, min_fraction: float = 0.5) -> bool:
    """A cheap check that `text` is written in `language`.

    zh/ar/hi: most letters are in the language's script. en/es/fr: most letters are
    Latin (a light check: it cannot tell English from French).
    """
    info = _registry()["languages"].get(language)
    if info is None:
        raise ValueError(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
    if info["script"] is not None:
        return script_fraction(text, info["script"]) >= min_fraction
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum(c.isascii() or 0x00C0 <= ord(c) <= 0x024F for c in letters)
    return latin / len(letters) >= min_fraction
