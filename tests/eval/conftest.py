"""A small hand-written benchmark in the XMedBench format, in all six languages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEST_ITEMS = [
    {
        "question": "Which organ secretes insulin?",
        "options": "(A) Liver\n(B) Pancreas\n(C) Kidney\n(D) Spleen",
        "answer": "(B)",
        "source": "medqa-usmle",
    },
    {
        "question": "What is the normal resting heart rate of an adult, in beats per minute?",
        "options": "(A) 20-40\n(B) 60-100\n(C) 120-160\n(D) 180-220\n(E) 240-280",
        "answer": "(B)",
        "source": "mmlu-medical",
    },
    {
        "question": "Does aspirin inhibit cyclooxygenase?",
        "context": "Aspirin irreversibly acetylates a serine of cyclooxygenase.",
        "options": "(A) yes\n(B) no\n(C) maybe",
        "answer": "(A)",
        "source": "pubmedqa",
    },
    {
        "question": "哪个器官分泌胰岛素？",
        "options": "(A) 肝脏\n(B) 胰腺\n(C) 肾脏\n(D) 脾脏",
        "answer": "(B)",
        "source": "cmmlu-medical",
    },
    {
        "question": "¿Qué órgano secreta la insulina?",
        "options": "(A) Hígado\n(B) Páncreas\n(C) Riñón\n(D) Bazo",
        "answer": "(B)",
        "source": "headqa",
    },
    {
        "question": "Quel organe sécrète l'insuline ?",
        "options": "(A) Foie\n(B) Pancréas\n(C) Rein\n(D) Rate",
        "answer": "(B)",
        "source": "frenchmedmcqa",
    },
    {
        "question": "ما العضو الذي يفرز الأنسولين؟",
        "options": "(A) الكبد\n(B) البنكرياس\n(C) الكلية\n(D) الطحال",
        "answer": "(B)",
        "source": "mmlu-medical-ar",
    },
    {
        "question": "कौन सा अंग इंसुलिन स्रावित करता है?",
        "options": "(A) यकृत\n(B) अग्न्याशय\n(C) गुर्दा\n(D) तिल्ली",
        "answer": "(B)",
        "source": "mmlu-medical-hi",
    },
]

DEV_ITEMS = [
    {
        "question": "Which vitamin deficiency causes scurvy?",
        "options": "(A) Vitamin A\n(B) Vitamin B12\n(C) Vitamin C\n(D) Vitamin D",
        "answer": "(C)",
        "source": "medqa-usmle",
    },
    {
        "question": "Which blood cells carry oxygen?",
        "options": "(A) Red blood cells\n(B) Platelets\n(C) Neutrophils\n(D) Lymphocytes",
        "answer": "(A)",
        "source": "medqa-usmle",
    },
    {
        "question": "Which bone is the longest in the human body?",
        "options": "(A) Humerus\n(B) Tibia\n(C) Femur\n(D) Radius",
        "answer": "(C)",
        "source": "mmlu-medical",
    },
    {
        "question": "缺乏哪种维生素会导致坏血病？",
        "options": "(A) 维生素A\n(B) 维生素B12\n(C) 维生素C\n(D) 维生素D",
        "answer": "(C)",
        "source": "cmmlu-medical",
    },
    {
        "question": "哪种血细胞运输氧气？",
        "options": "(A) 红细胞\n(B) 血小板\n(C) 中性粒细胞\n(D) 淋巴细胞",
        "answer": "(A)",
        "source": "medqa-mcmle",
    },
    {
        "question": "¿Qué vitamina previene el escorbuto?",
        "options": "(A) Vitamina A\n(B) Vitamina B12\n(C) Vitamina C\n(D) Vitamina D",
        "answer": "(C)",
        "source": "headqa",
    },
    {
        "question": "Quelle vitamine prévient le scorbut ?",
        "options": "(A) Vitamine A\n(B) Vitamine B12\n(C) Vitamine C\n(D) Vitamine D",
        "answer": "(C)",
        "source": "frenchmedmcqa",
    },
    {
        "question": "أي فيتامين يمنع الإسقربوط؟",
        "options": "(A) فيتامين أ\n(B) فيتامين ب12\n(C) فيتامين ج\n(D) فيتامين د",
        "answer": "(C)",
        "source": "mmlu-medical-ar",
    },
    {
        "question": "कौन सा विटामिन स्कर्वी से बचाता है?",
        "options": "(A) विटामिन ए\n(B) विटामिन बी12\n(C) विटामिन सी\n(D) विटामिन डी",
        "answer": "(C)",
        "source": "mmlu-medical-hi",
    },
]


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    """A benchmark directory with test.json and dev.json."""
    root = tmp_path / "bench"
    write_json(root / "test.json", TEST_ITEMS)
    write_json(root / "dev.json", DEV_ITEMS)
    return root
