#!/usr/bin/env python3
"""Build the bundled sample corpus and benchmark of medbase-ray from a fact table.

Run from the repository root (standard library only, Python 3.11+)::

    python3 tools/build_sample_data.py

It reads ``tools/sample_facts.json`` and rewrites, under ``medbase_ray/corpus/data/``:

* ``apollo/medicalGuideline_{lang}_text.json``: passages (a list of strings);
* ``apollo/medicalGuideline_{lang}_qa.json``: QA turn lists (``[question, answer, ...]``);
* ``apollo/patient_{lang}_dialogue.json``: patient/doctor dialogues (turn lists);
* ``xmedbench/test.json`` and ``xmedbench/dev.json``: 4-option questions in the
  XMedBench layout ``{question, options, answer, source}``;
* ``README.md``: what the files are, with counts.

Every benchmark item asks, in a phrasing that no SFT question uses, about a fact
that the QA data states; the correct option is the fact's answer term, verbatim
as it appears in those SFT answers, so that a tiny model trained on the QA data
can score above chance with cloze (log-likelihood) scoring. Test and dev items
cover disjoint facts. The output is deterministic (fixed seed, no timestamps):
re-running gives byte-identical files. The run ends with a self-check (asserts).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FACTS_PATH = ROOT / "tools" / "sample_facts.json"
DATA_DIR = ROOT / "medbase_ray" / "corpus" / "data"
APOLLO_DIR = DATA_DIR / "apollo"
XMEDBENCH_DIR = DATA_DIR / "xmedbench"

LANGS = ("en", "zh", "es", "fr", "ar", "hi")
SEED = 20240601
LETTERS = "ABCD"
DEV_FACTS_PER_RELATION = 2
FOLLOWUP_QA = 8  # QA pairs per language that get a follow-up turn (4 turns in all)
MIN_COUNTS = {"text": 30, "qa": 150, "dialogue": 5, "test": 40, "dev": 10}

LATIN_SCRIPT = frozenset({"en", "es", "fr"})  # capitalise the first letter of a sentence
DECIMAL_COMMA = frozenset({"es", "fr"})  # 36.5 -> 36,5
SCRIPT_RE = {
    "zh": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]"),
    "ar": re.compile(r"[\u0600-\u06ff]"),
    "hi": re.compile(r"[\u0900-\u097f]"),
}
OPTION_RE = re.compile(r"\(([A-E])\) (\S.*)")

Fact = dict[str, Any]
Relation = dict[str, Any]
Table = dict[str, Any]
Item = dict[str, str]


def load_table(path: Path = FACTS_PATH) -> Table:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def de_phrase(phrase: str, lang: str) -> str:
    """'de' + phrase with French elision and French/Spanish article contraction."""
    if lang == "es":
        return "del " + phrase[3:] if phrase.startswith("el ") else "de " + phrase
    if lang == "fr":
        for article, contracted in (("le ", "du "), ("les ", "des ")):
            if phrase.startswith(article):
                return contracted + phrase[len(article) :]
        if phrase[:1].lower() in "aeiouyhéèêàâîôû" and not phrase.startswith(("la ", "l'")):
            return "d'" + phrase
    return "de " + phrase


def answer_term(fact: Fact, lang: str, value: str | None = None) -> str:
    """The answer as an option text; numeric facts render `value` (default: correct)."""
    entry = fact[lang]
    if "values" not in fact:
        return entry["a"]
    raw = fact["values"][0] if value is None else value
    localized = raw.replace(".", ",") if lang in DECIMAL_COMMA else raw
    return entry.get("fmt", "{v}").format(v=localized)


def slot_values(fact: Fact, lang: str) -> dict[str, str]:
    entry = fact[lang]
    s = entry["s"]
    a = answer_term(fact, lang)
    sd, ad = entry.get("sd", s), entry.get("ad", a)
    return {
        "s": s,
        "sd": sd,
        "a": a,
        "ad": ad,
        "u": entry.get("u", ""),
        "p": entry.get("p", ""),
        "de_s": de_phrase(s, lang),
        "de_sd": de_phrase(sd, lang),
        "de_a": de_phrase(a, lang),
        "de_ad": de_phrase(ad, lang),
    }


def capitalize(text: str, lang: str) -> str:
    """Upper-case the first letter (after e.g. a leading '¿') in Latin-script languages."""
    if lang in LATIN_SCRIPT:
        for i, ch in enumerate(text):
            if ch.isalpha():
                return text[:i] + ch.upper() + text[i + 1 :]
    return text


def render(template: str, values: dict[str, str], lang: str) -> str:
    return capitalize(re.sub(r"\s+", " ", template.format(**values)).strip(), lang)


def option_text(term: str, lang: str) -> str:
    """An option as exam options are written: "Vitamin C", as the short-answer leads say it."""
    return capitalize(term, lang)


def all_facts(table: Table) -> list[tuple[Relation, Fact]]:
    return [(rel, fact) for rel in table["relations"] for fact in rel["facts"]]


# ----------------------------------------------------------------------------- SFT data


def build_qa(table: Table, lang: str, followup_ids: set[str]) -> list[list[str]]:
    """Three QA pairs per fact; the last one leads with the bare answer term.

    Cloze scoring reads the option text right after the assistant tag, so the data
    also shows answers that start with it ("Vitamin C. Scurvy results from ...").
    Some last pairs get a follow-up turn.
    """
    sep = "" if lang == "zh" else " "
    out: list[list[str]] = []
    for rel, fact in all_facts(table):
        tpl, values = rel["templates"][lang], slot_values(fact, lang)
        for k, (question, answer) in enumerate(tpl["sft"]):
            reply = render(answer, values, lang)
            last = k == len(tpl["sft"]) - 1
            if last:
                reply = render(table["short_answer_lead"][lang], values, lang) + sep + reply
            turns = [render(question, values, lang), reply]
            if last and fact["id"] in followup_ids:
                turns += [table["followup_question"][lang], render(tpl["passage"], values, lang)]
            out.append(turns)
    return out


def chunk_sizes(n: int) -> list[int]:
    """Two facts per passage; an odd one out joins the last passage."""
    sizes = [2] * (n // 2)
    if n % 2:
        sizes[-1] += 1
    return sizes


def build_passages(table: Table, lang: str, orders: dict[str, list[Fact]]) -> list[str]:
    """Passages of 4 sentences: a generic sentence, 2-3 fact sentences, (generic)."""
    sep = "" if lang == "zh" else " "
    out: list[str] = []
    for rel in table["relations"]:
        tpl, facts, start = rel["templates"][lang], orders[rel["id"]], 0
        for i, size in enumerate(chunk_sizes(len(facts))):
            chunk, start = facts[start : start + size], start + size
            sentences = [tpl["generic"][i % 2]]
            sentences += [render(tpl["passage"], slot_values(f, lang), lang) for f in chunk]
            if size == 2:
                sentences.append(tpl["generic"][(i + 1) % 2])
            out.append(sep.join(sentences))
    return out


# ----------------------------------------------------------------------------- benchmark


def plan_benchmark(table: Table, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Language-independent plan: split the facts per relation, pick 3 distractors each."""
    plan: dict[str, list[dict[str, Any]]] = {"test": [], "dev": []}
    for rel in table["relations"]:
        facts = rel["facts"]
        dev_ids = set(rng.sample([f["id"] for f in facts], DEV_FACTS_PER_RELATION))
        for fact in facts:
            if "values" in fact:  # numeric: plausible values listed in the table
                wrong: list[Any] = list(fact["values"][1:])
            else:  # same relation, so distractors are of the same type
                wrong = rng.sample([f for f in facts if f is not fact], len(LETTERS) - 1)
            split = "dev" if fact["id"] in dev_ids else "test"
            plan[split].append({"relation": rel, "fact": fact, "wrong": wrong})
    return plan


def build_benchmark(
    table: Table, plan: list[dict[str, Any]], lang: str, rng: random.Random
) -> list[dict[str, str]]:
    """Items with private keys (_lang, _fact, ...) that the self-check uses."""
    n = len(plan)
    letters = [LETTERS[i % len(LETTERS)] for i in range(n)]  # even spread over A-D
    order = list(range(n))
    rng.shuffle(letters)
    rng.shuffle(order)  # mix relations, and so sources
    sources = table["sources"][lang]
    items: list[dict[str, str]] = []
    for pos, idx in enumerate(order):
        rel, fact = plan[idx]["relation"], plan[idx]["fact"]
        values = slot_values(fact, lang)
        wrong = [
            answer_term(fact, lang, w) if isinstance(w, str) else answer_term(w, lang)
            for w in plan[idx]["wrong"]
        ]
        rng.shuffle(wrong)
        slot = LETTERS.index(letters[pos])
        correct = option_text(values["a"], lang)
        options = [option_text(w, lang) for w in wrong[:slot]] + [correct]
        options += [option_text(w, lang) for w in wrong[slot:]]
        items.append(
            {
                "question": render(rel["templates"][lang]["bench"], values, lang),
                "options": "\n".join(
                    f"({L}) {text}" for L, text in zip(LETTERS, options, strict=True)
                ),
                "answer": f"({letters[pos]})",
                "source": sources[pos % len(sources)],
                "_lang": lang,
                "_fact": fact["id"],
                "_subject": values["s"],
                "_correct": correct,
            }
        )
    return items


def public(item: dict[str, str]) -> Item:
    return {k: v for k, v in item.items() if not k.startswith("_")}


# ----------------------------------------------------------------------------- build


def to_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"


def build_all(table: Table) -> tuple[dict[Path, str], dict[str, list[dict[str, str]]]]:
    """Every output file's text, plus the benchmark items with their private keys."""
    rng = random.Random(SEED)
    fact_ids = sorted(fact["id"] for _, fact in all_facts(table))
    followup_ids = set(rng.sample(fact_ids, FOLLOWUP_QA))
    orders = {rel["id"]: rng.sample(rel["facts"], len(rel["facts"])) for rel in table["relations"]}
    plan = plan_benchmark(table, rng)

    files: dict[Path, str] = {}
    counts: dict[str, dict[str, int]] = {}
    bench: dict[str, list[dict[str, str]]] = {"test": [], "dev": []}
    for lang in LANGS:
        qa = build_qa(table, lang, followup_ids)
        text = build_passages(table, lang, orders)
        dialogues = table["dialogues"][lang]
        files[APOLLO_DIR / f"medicalGuideline_{lang}_text.json"] = to_json(text)
        files[APOLLO_DIR / f"medicalGuideline_{lang}_qa.json"] = to_json(qa)
        files[APOLLO_DIR / f"patient_{lang}_dialogue.json"] = to_json(dialogues)
        for split in bench:
            bench[split] += build_benchmark(table, plan[split], lang, rng)
        counts[lang] = {
            "text": len(text),
            "qa": len(qa),
            "qa_4turn": sum(len(t) == 4 for t in qa),
            "dialogue": len(dialogues),
            "test": sum(i["_lang"] == lang for i in bench["test"]),
            "dev": sum(i["_lang"] == lang for i in bench["dev"]),
        }
    for split, items in bench.items():
        files[XMEDBENCH_DIR / f"{split}.json"] = to_json([public(i) for i in items])
    files[DATA_DIR / "README.md"] = render_readme(table, counts)
    return files, bench


def render_readme(table: Table, counts: dict[str, dict[str, int]]) -> str:
    rows = "\n".join(
        f"| {lang} | {c['text']} | {c['qa']} ({c['qa_4turn']} with 4 turns) | {c['dialogue']} "
        f"| {c['test']} | {c['dev']} | {', '.join(table['sources'][lang])} |"
        for lang, c in counts.items()
    )
    relations = "\n".join(
        f"| `{rel['id']}` | {rel['description']} | {len(rel['facts'])} |"
        for rel in table["relations"]
    )
    n_facts = sum(len(rel["facts"]) for rel in table["relations"])
    return f"""# Bundled sample data

Small sample data written for medbase-ray, in the real input formats of the
pipeline, in all six languages (en, zh, es, fr, ar, hi). It lets the whole
pipeline (prepare, train, eval) run on a laptop with the embedded tiny model.
It is teaching material for a test fixture, not a clinical reference.

**Do not edit these files by hand.** They are generated by
`tools/build_sample_data.py` from the fact table `tools/sample_facts.json`:
edit the table, then run `python3 tools/build_sample_data.py` (standard library
only, deterministic: re-running gives byte-identical files, and it ends with a
self-check).

## Files

- `apollo/` follows the ApolloCorpus layout `{{source}}_{{language}}_{{type}}.json`:
  - `medicalGuideline_{{lang}}_text.json`: a list of passages (strings), each
    stating 2-3 facts plus general sentences;
  - `medicalGuideline_{{lang}}_qa.json`: a list of turn lists
    `[question, answer]`, some `[question, answer, follow-up, answer]`;
  - `patient_{{lang}}_dialogue.json`: patient/doctor dialogues (turn lists,
    patient first) that recommend seeing a doctor where apt.
- `xmedbench/test.json`, `xmedbench/dev.json` follow the XMedBench layout: a list
  of `{{"question", "options": "(A) ...\\n(B) ...\\n(C) ...\\n(D) ...", "answer": "(B)",
  "source"}}`; the language follows from `source`.

## How the benchmark relates to the SFT data

The {n_facts} facts are grouped by relation type; each has a subject and an
answer term in all six languages. The QA file states every fact in three
phrasings; each benchmark question asks about one fact in a fourth phrasing
that no SFT question uses. The correct option is the answer term exactly as it
appears in the SFT answers (the third answer of each fact starts with it, e.g.
"Vitamin C. Scurvy results from a shortage of vitamin C.", because cloze scoring
reads the option right after the assistant tag; options are capitalised like
sentence starts in en/es/fr). The distractors are answers of other facts of the
same relation (or plausible wrong values for numeric facts), so a small model
scored by option log-likelihood (cloze) should beat chance (25%) after training
on the QA data. Test and dev items test different facts (a seeded
split, {DEV_FACTS_PER_RELATION} dev facts per relation); the correct letter is
spread evenly over A-D.

| relation | what it links | facts |
| --- | --- | --- |
{relations}

## Counts

| lang | text passages | qa lists | dialogues | test | dev | sources |
| --- | --- | --- | --- | --- | --- | --- |
{rows}
"""


def write_files(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")


# ----------------------------------------------------------------------------- self-check


def check_string(s: Any, lang: str, need_script: bool) -> None:
    assert isinstance(s, str) and s, f"empty or non-string: {s!r}"
    assert s == s.strip() and "  " not in s, f"stray whitespace: {s!r}"
    assert "\ufffd" not in s and "{" not in s and "}" not in s, f"bad text: {s!r}"
    s.encode("utf-8")  # raises on lone surrogates
    if need_script and lang in SCRIPT_RE:
        assert SCRIPT_RE[lang].search(s), f"{lang} text without its script: {s!r}"


def check_turns(turn_lists: Any, lang: str, min_turns: int, max_turns: int) -> None:
    assert isinstance(turn_lists, list)
    for turns in turn_lists:
        assert isinstance(turns, list) and len(turns) % 2 == 0, turns
        assert min_turns <= len(turns) <= max_turns, turns
        for turn in turns:
            check_string(turn, lang, need_script=True)


def parse_options(options: str) -> list[tuple[str, str]]:
    parsed = []
    for line in options.split("\n"):
        match = OPTION_RE.fullmatch(line)
        assert match, f"bad option line: {line!r}"
        parsed.append((match.group(1), match.group(2)))
    return parsed


def self_check(table: Table, bench: dict[str, list[dict[str, str]]]) -> None:
    """Re-read the written files and assert the properties the brief asks for."""

    def read(path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))

    all_sft_questions: set[str] = set()
    sft_answers: dict[str, list[str]] = {}
    for lang in LANGS:
        text = read(APOLLO_DIR / f"medicalGuideline_{lang}_text.json")
        qa = read(APOLLO_DIR / f"medicalGuideline_{lang}_qa.json")
        dialogues = read(APOLLO_DIR / f"patient_{lang}_dialogue.json")
        assert isinstance(text, list) and len(text) >= MIN_COUNTS["text"], (lang, len(text))
        for passage in text:
            check_string(passage, lang, need_script=True)
        assert len(qa) >= MIN_COUNTS["qa"], (lang, len(qa))
        check_turns(qa, lang, 2, 4)
        assert 5 <= sum(len(t) == 4 for t in qa) <= 10, lang
        assert len(dialogues) >= MIN_COUNTS["dialogue"], (lang, len(dialogues))
        check_turns(dialogues, lang, 4, 8)
        all_sft_questions |= {t[i] for t in qa for i in range(0, len(t), 2)}
        sft_answers[lang] = [t[i] for t in qa for i in range(1, len(t), 2)]

    facts_by_split: dict[str, set[tuple[str, str]]] = {}
    for split, items in bench.items():
        written = read(XMEDBENCH_DIR / f"{split}.json")
        assert written == [public(i) for i in items], f"{split}.json differs from the build"
        facts_by_split[split] = {(i["_lang"], i["_fact"]) for i in items}
        for lang in LANGS:
            mine = [i for i in items if i["_lang"] == lang]
            assert len(mine) >= MIN_COUNTS[split], (split, lang, len(mine))
            letters = Counter(i["answer"] for i in mine)
            assert max(letters.values()) - min(letters.values()) <= 1, (split, lang, letters)
            assert set(letters) == {f"({L})" for L in LETTERS}, (split, lang, letters)
            assert {i["source"] for i in mine} == set(table["sources"][lang]), (split, lang)
        for item in items:
            lang = item["_lang"]
            assert set(public(item)) == {"question", "options", "answer", "source"}
            check_string(item["question"], lang, need_script=True)
            assert item["question"] not in all_sft_questions, item["question"]
            options = parse_options(item["options"])
            labels = [label for label, _ in options]
            texts = [text for _, text in options]
            assert labels == list("ABCDE"[: len(options)]) and 4 <= len(options) <= 5, labels
            assert len(set(texts)) == len(texts), f"duplicate options: {texts}"
            for text in texts:
                check_string(text, lang, need_script=False)
            match = re.fullmatch(r"\(([A-E])\)", item["answer"])
            assert match and match.group(1) in labels, item["answer"]
            correct = texts[labels.index(match.group(1))]
            assert correct == item["_correct"]
            # The fact is stated in the SFT data: subject and answer term in one answer
            # (the option verbatim; the subject may be capitalised at a sentence start).
            subject = item["_subject"].casefold()
            assert any(correct in a and subject in a.casefold() for a in sft_answers[lang]), (
                f"{lang}: fact {item['_fact']} not stated verbatim in the QA answers"
            )
    assert not facts_by_split["test"] & facts_by_split["dev"], "a fact is in both test and dev"
    n_facts = len(all_facts(table))
    assert len(facts_by_split["test"] | facts_by_split["dev"]) == n_facts * len(LANGS)


def main() -> None:
    table = load_table()
    assert tuple(table["languages"]) == LANGS
    files, bench = build_all(table)
    again, _ = build_all(table)
    assert files == again, "the build is not deterministic"
    write_files(files)
    self_check(table, bench)
    for path in files:
        print(path.relative_to(ROOT))
    print("self-check passed")


if __name__ == "__main__":
    main()
