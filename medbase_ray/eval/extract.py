"""Answer extraction from generated text (the default mode), after Apollo's scorer.

Apollo (FreedomIntelligence/Apollo, src/evaluate/generate_score.py, extract_and_choose_answer,
reproduced exactly by eval/apollo.py for `eval.apollo_compat`): take the first non-empty
line; the most frequent parenthesised letter, half- or full-width, "(b)" and "（C）"
alike (ties: the first seen); else a bare letter; else "Yes." -> A and "No." -> B
(PubMedQA's options). Changed here:

- an explicit letter label opening the line ("C. ...", "C) ...", "C: ...") is the
  answer, whatever the text after it holds: "C. <option A's text, with its (A)>" is C;
- the answer phrase of each language ("The correct answer is D", "Answer: D",
  "正确答案是C") is read before bare letters, so "Answer: D" is D, not the A of "Answer";
- a bare letter must stand alone (Apollo counted any capital A-F, so "Dopamine" read as D)
  and be an option letter when the options are known;
- with the options known, a line that is exactly an option's text picks that option
  (which is what "Yes." -> A means for PubMedQA).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from medbase_ray.eval.prompts import load_templates

_PARENTHESISED = re.compile(r"[(]\s*([A-Za-z])\s*[)]")
_BARE = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")
# "C.", "C)", "C:" opening the line ("A patient" is no label; "(C)" is counted with the
# other parenthesised letters, as Apollo does).
_LEADING_LABEL = re.compile(r"^([A-Z])\s*(?:[.)]|:(?!\S))")
_DEFAULT_LETTERS = "ABCDEF"
_TRAILING = " .。!！?？,，;；:：।"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _most_frequent(letters: list[str]) -> str | None:
    """The most frequent letter; ties go to the one seen first (Counter keeps order)."""
    if not letters:
        return None
    counts = Counter(letters)
    best = max(counts.values())
    return next(letter for letter, n in counts.items() if n == best)


def _cue_letters(line: str, language: str, allowed: str) -> list[str]:
    templates = load_templates()
    cues = list(templates[language].cues) if language in templates else []
    if language != "en":  # models often answer in English whatever the question's language
        cues += list(templates["en"].cues)
    found: list[str] = []
    for cue in cues:
        pattern = re.escape(cue) + r"\s*[:：]?\s*[(]?\s*([A-Z])(?![A-Za-z])"
        for m in re.finditer(pattern, line, flags=re.IGNORECASE):
            letter = m.group(1)
            # Case-insensitive cue, but the letter must be a capital ("is a drug" is no answer).
            if letter.isupper() and letter in allowed:
                found.append(letter)
        if found:
            return found
    return found


def extract_answer(
    text: str | None, language: str, options: dict[str, str] | None = None
) -> str | None:
    """The option letter a generated answer names, or None when it names none.

    `options` (letter -> text), when given, limits bare letters to the option letters
    and lets a line that is exactly an option's text pick that option.
    """
    if not text:
        return None
    # NFKC turns full-width "（Ｃ）" into "(C)"; letters are all that is read from it.
    line = unicodedata.normalize("NFKC", _first_line(text))
    if not line:
        return None
    allowed = "".join(options) if options else _DEFAULT_LETTERS
    label = _LEADING_LABEL.match(line)
    if label and label.group(1) in allowed:
        return label.group(1)
    parenthesised = [m.upper() for m in _PARENTHESISED.findall(line) if m.upper() in allowed]
    if parenthesised:
        return _most_frequent(parenthesised)
    cued = _cue_letters(line, language, allowed)
    if cued:
        return _most_frequent(cued)
    bare = [m for m in _BARE.findall(line) if m in allowed]
    if bare:
        return _most_frequent(bare)
    said = line.strip(_TRAILING).casefold()
    if options is not None:
        for letter, option in options.items():
            if said and option.strip(_TRAILING).casefold() == said:
                return letter
        return None
    return {"yes": "A", "no": "B"}.get(said)
