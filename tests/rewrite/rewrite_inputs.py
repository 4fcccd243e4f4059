"""Small inline inputs for the rewrite tests (importable: conftest puts this folder on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def passage(i: int, language: str = "en", marker: str = "") -> dict:
    texts = {
        "en": "Hypertension is treated with lifestyle changes and, when needed, medication.",
        "zh": "高血压的治疗包括改变生活方式，必要时使用药物治疗。",
        "es": "La hipertensión se trata con cambios en el estilo de vida y medicamentos.",
        "fr": "L'hypertension se traite par des changements de mode de vie et des médicaments.",
    }
    text = f"{marker} {texts[language]}".strip() if marker else f"{texts[language]} ({i})"
    return {"id": f"{language}-{i}", "source": "guideline", "language": language, "text": text}
