"""Mixture selection (pure, no Ray): shares, temperature, epochs, budget, order, seed."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from pydantic import ValidationError

from medbase_ray.prepare.config import MixtureSpec, load_mixture_spec, mixture_preset_path
from medbase_ray.prepare.mixture import SourceRows, plan_mixture


def source(key: str, rows: int, seed: int, rows_per_group: int = 64) -> SourceRows:
    name, _, lang = key.rpartition("_")
    rng = np.random.default_rng(seed)
    tokens = rng.integers(380, 512, size=rows).astype(np.int64)  # packed rows, part-filled
    groups = [
        (f"{key}/part-0.parquet", a, min(rows_per_group, rows - a))
        for a in range(0, rows, rows_per_group)
    ]
    return SourceRows(key, name, lang, groups, tokens)


SOURCES = [
    source("guideline_en", 900, 1),
    source("exam_en", 300, 2),
    source("guideline_zh", 400, 3),
    source("patient_fr", 150, 4),
    source("guideline_hi", 60, 5),
]


def realised(plan) -> tuple[collections.Counter, collections.Counter]:
    by_key = {s.key: s for s in SOURCES}
    tokens, rows = collections.Counter(), collections.Counter()
    for c in plan.chunks:
        tokens[c.key] += int(by_key[c.key].tokens[c.rows].sum())
        rows[c.key] += len(c.rows)
    return tokens, rows


def language_shares(plan) -> dict[str, float]:
    tokens, _ = realised(plan)
    by_lang = collections.Counter()
    for key, n in tokens.items():
        by_lang[key.rpartition("_")[2]] += n
    total = sum(by_lang.values())
    return {lang: n / total for lang, n in by_lang.items()}


def test_language_weights_are_met_within_two_points() -> None:
    weights = {"en": 0.4, "zh": 0.3, "fr": 0.2, "hi": 0.1}
    plan = plan_mixture(SOURCES, MixtureSpec(by="language", weights=weights, seed=1))
    shares = language_shares(plan)
    for lang, w in weights.items():
        assert abs(shares[lang] - w) < 0.02, (lang, shares[lang], w)
        assert plan.report["languages"][lang]["share"] == pytest.approx(shares[lang])
        assert plan.report["languages"][lang]["target_share"] == pytest.approx(w)
    # hi is small: it reaches its share by repetition (more than one epoch).
    assert plan.report["sources"]["guideline_hi"]["epochs"] > 1.5
    # Inside a language, sources keep their proportions.
    tokens, _ = realised(plan)
    en = {k: sum(s.tokens) for s in SOURCES for k in [s.key] if k.endswith("_en")}
    assert tokens["guideline_en"] / tokens["exam_en"] == pytest.approx(
        en["guideline_en"] / en["exam_en"], rel=0.02
    )


def test_a_language_left_out_of_the_weights_gets_nothing() -> None:
    plan = plan_mixture(SOURCES, MixtureSpec(by="language", weights={"en": 1, "zh": 1}))
    assert set(language_shares(plan)) == {"en", "zh"}
    assert plan.report["languages"]["fr"]["tokens"] == 0


def test_temperature_sampling() -> None:
    uniform = language_shares(plan_mixture(SOURCES, MixtureSpec(temperature_alpha=0.0)))
    assert all(abs(s - 0.25) < 0.02 for s in uniform.values()), uniform
    natural = language_shares(plan_mixture(SOURCES, MixtureSpec(temperature_alpha=1.0)))
    total = sum(int(s.tokens.sum()) for s in SOURCES)
    en = sum(int(s.tokens.sum()) for s in SOURCES if s.language == "en")
    assert natural["en"] == pytest.approx(en / total, abs=0.01)
    # alpha=0.5 sits between: low-resource languages gain, high-resource ones lose.
    half = language_shares(plan_mixture(SOURCES, MixtureSpec(temperature_alpha=0.5)))
    assert natural["hi"] < half["hi"] < uniform["hi"]
    assert natural["en"] > half["en"] > uniform["en"]


def test_epochs_repeat_sources_and_the_budget_scales_the_total() -> None:
    spec = MixtureSpec(by="source", epochs={"guideline_en": 2, "exam": 0.5, "*_zh": 0})
    plan = plan_mixture(SOURCES, spec)
    tokens, rows = realised(plan)
    sizes = {s.key: int(s.tokens.sum()) for s in SOURCES}
    assert tokens["guideline_en"] == 2 * sizes["guideline_en"] and rows["guideline_en"] == 1800
    assert abs(tokens["exam_en"] - sizes["exam_en"] / 2) <= 512  # within one row
    assert tokens["guideline_zh"] == 0
    assert tokens["patient_fr"] == sizes["patient_fr"]  # not named: one epoch
    # Each pass is a set of whole rows: a row is at most once in a pass.
    budget = 200_000
    plan = plan_mixture(SOURCES, spec.model_copy(update={"token_budget": budget}))
    assert abs(plan.report["total_tokens"] - budget) <= 512 * len(SOURCES)


def test_same_seed_same_plan_other_seed_other_order() -> None:
    spec = MixtureSpec(by="language", weights={"en": 0.5, "zh": 0.3, "fr": 0.2}, seed=3)
    a, b = plan_mixture(SOURCES, spec), plan_mixture(SOURCES, spec)
    assert [(c.shard, c.rows) for c in a.chunks] == [(c.shard, c.rows) for c in b.chunks]
    assert a.units() == b.units()
    c = plan_mixture(SOURCES, spec.model_copy(update={"seed": 4}))
    assert [(x.shard, x.rows) for x in c.chunks] != [(x.shard, x.rows) for x in a.chunks]


def test_priority_draws_high_priority_sources_first() -> None:
    spec = MixtureSpec(by="source", priority={"guideline_en": 16, "exam_en": 1})
    plan = plan_mixture(SOURCES, spec)
    positions = collections.defaultdict(list)
    for i, c in enumerate(plan.chunks):
        positions[c.key].append(i / len(plan.chunks))
    assert np.mean(positions["guideline_en"]) < 0.35 < 0.5 < np.mean(positions["exam_en"])
    # Priority orders; it changes no amounts.
    plain = plan_mixture(SOURCES, MixtureSpec(by="source"))
    assert realised(plan) == realised(plain)


def test_unmatched_keys_are_reported() -> None:
    spec = MixtureSpec(by="source", epochs={"medicalExam_en": 2, "guideline": 1})
    report = plan_mixture(SOURCES, spec).report
    assert report["unmatched_keys"] == {"epochs": ["medicalExam_en"]}


def test_spec_validation_and_presets() -> None:
    with pytest.raises(ValidationError, match="unknown languages"):
        MixtureSpec(by="language", weights={"english": 1})
    with pytest.raises(ValidationError, match="not both"):
        MixtureSpec(weights={"en": 1}, temperature_alpha=0.5)
    with pytest.raises(ValidationError, match="extra"):
        MixtureSpec(wieghts={"en": 1})
    with pytest.raises(ValueError, match="unknown mixture preset 'nope'; shipped: apollo"):
        mixture_preset_path("nope")
    apollo = load_mixture_spec("apollo")
    assert apollo.epochs["medicalExam_en"] == 2 and apollo.priority["medicalWeb_en"] == 16
    # `preset` fills the fields not given; given ones win.
    spec = MixtureSpec.model_validate({"preset": "apollo", "seed": 5})
    assert spec.seed == 5 and spec.epochs == apollo.epochs
    assert MixtureSpec.model_validate(spec.model_dump()) == spec
