"""Prompt sets of the rewrite stage: YAML data, one template per task and language.

The shipped set (`prompts/apollo.yaml`) holds Apollo's prompts; a user's own file with
the same keys replaces it (`rewrite.prompts_file`). Templates are checked when loaded:
every required placeholder present, languages known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from medbase_ray.corpus.languages import LANGUAGES, languages

# Placeholders each template must contain (other known ones are optional).
REQUIRED_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "qa_question": ("text",),
    "qa_answer": ("question", "reference"),
    "dialogue": ("text",),
    "translate": ("conversation",),
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def shipped_prompts_path() -> Path:
    return Path(str(resources.files("medbase_ray.rewrite") / "prompts" / "apollo.yaml"))


@dataclass(frozen=True)
class PromptSet:
    """`templates[kind][language]` -> template text."""

    templates: dict[str, dict[str, str]]
    path: str

    def template(self, kind: str, language: str) -> str:
        try:
            return self.templates[kind][language]
        except KeyError:
            raise KeyError(
                f"prompt set {self.path} has no {kind!r} prompt for language {language!r}"
            ) from None

    def render(self, kind: str, language: str, **values: str) -> str:
        return render_template(self.template(kind, language), values)

    def missing(self, kind: str, language_codes: set[str]) -> list[str]:
        """The languages among `language_codes` that have no `kind` prompt."""
        return sorted(code for code in language_codes if code not in self.templates.get(kind, {}))


def render_template(template: str, values: dict[str, str]) -> str:
    """Replace `{name}` for the names in `values`, once.

    Not str.format: the passage itself is never re-parsed, so braces in medical text
    (or in a user's template) need no escaping.
    """
    return _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), template)


def load_prompts(path: str | Path | None = None) -> PromptSet:
    """Load and check a prompt set; raises ValueError naming the file and the key."""
    source = Path(path) if path is not None else shipped_prompts_path()
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read prompt set {source}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"prompt set {source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"prompt set {source}: expected a mapping of task -> language -> text")
    problems = []
    unknown = sorted(set(data) - set(REQUIRED_PLACEHOLDERS))
    if unknown:
        problems.append(f"unknown keys {unknown} (known: {', '.join(REQUIRED_PLACEHOLDERS)})")
    templates: dict[str, dict[str, str]] = {}
    for kind, required in REQUIRED_PLACEHOLDERS.items():
        by_language = data.get(kind) or {}
        if not isinstance(by_language, dict):
            problems.append(f"{kind}: expected a mapping of language -> template")
            continue
        for code, text in by_language.items():
            where = f"{kind}.{code}"
            if code not in LANGUAGES:
                problems.append(f"{where}: unknown language (known: {', '.join(LANGUAGES)})")
            elif not isinstance(text, str) or not text.strip():
                problems.append(f"{where}: expected a non-empty string")
            else:
                absent = [p for p in required if "{" + p + "}" not in text]
                if absent:
                    problems.append(f"{where}: missing placeholder(s) {{{'}, {'.join(absent)}}}")
        templates[kind] = {str(k): v for k, v in by_language.items() if isinstance(v, str)}
    if problems:
        raise ValueError(f"prompt set {source}: " + "; ".join(problems))
    return PromptSet(templates, str(source))


def language_name(code: str) -> str:
    return languages()[code]
