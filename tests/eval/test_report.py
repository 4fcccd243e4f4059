"""The report's averages, checked by hand on a small result set."""

from __future__ import annotations

import pytest

from medbase_ray.eval.report import (
    APOLLO_COLUMNS,
    MEDBASE_COLUMNS,
    build_report,
    published_tables,
    render_markdown,
)

LANG = {
    "medqa-usmle": "en",
    "mmlu-medical": "en",
    "pubmedqa": "en",
    "medqa-mcmle": "zh",
    "cmb-single": "zh",
    "headqa": "es",
    "mmlu-medical-ar": "ar",
    "mmlu-medical-hi": "hi",
    "my-exam": "en",
    "cmexam": "zh",
}


def results_from(spec: dict[str, list[int | None]]) -> list[dict]:
    """source -> outcomes: 1 right, 0 wrong, None wrong with no answer extracted."""
    rows = []
    for source, outcomes in spec.items():
        for i, outcome in enumerate(outcomes):
            rows.append(
                {
                    "id": f"{source}:{i}",
                    "source": source,
                    "language": LANG[source],
                    "answer": "A",
                    "prediction": None if outcome is None else ("A" if outcome else "B"),
                    "correct": outcome == 1,
                }
            )
    return rows


SPEC = {
    "medqa-usmle": [1, 1, 1, 0],  # 0.75
    "mmlu-medical": [1, None],  # 0.5
    "pubmedqa": [1, 1],  # 1.0
    "medqa-mcmle": [0, None],  # 0.0: must appear, not be dropped
    "cmb-single": [1, 0, 1, 0],  # 0.5
    "headqa": [1, 1, 1, 1, 0],  # 0.8
    "mmlu-medical-ar": [1, 0],  # 0.5
    "mmlu-medical-hi": [1, 0, None],  # 1/3
}


def test_averages_by_hand() -> None:
    report = build_report(results_from(SPEC), bootstrap_samples=500, seed=1)
    acc = report["accuracy"]
    assert report["items"] == 24
    assert report["unextractable"] == 3

    sources = acc["sources"]
    assert sources["medqa-mcmle"]["accuracy"] == 0.0
    assert sources["medqa-mcmle"]["ci95"] == [0.0, 0.0]
    assert sources["medqa-usmle"] == {
        "language": "en",
        "items": 4,
        "correct": 3,
        "accuracy": 0.75,
        "ci95": sources["medqa-usmle"]["ci95"],
        "multi_answer": 0,
    }
    assert sources["mmlu-medical-hi"]["accuracy"] == pytest.approx(1 / 3)

    languages = acc["languages"]
    # A language is the mean of its sources, not its pooled items (6/8 for en).
    assert languages["en"]["accuracy"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert languages["zh"]["accuracy"] == pytest.approx(0.25)
    assert languages["es"]["accuracy"] == pytest.approx(0.8)
    assert "fr" not in languages

    apollo = acc["apollo_average"]
    assert set(apollo["columns"]) == {"USMLE", "MMLU-EN", "MCMLE", "HEAD-QA", "MMLU-AR", "MMLU-HI"}
    assert apollo["missing"] == ["MedMCQA", "CMMLU", "FrenchMedMCQA"]
    assert apollo["accuracy"] == pytest.approx((0.75 + 0.5 + 0.0 + 0.8 + 0.5 + 1 / 3) / 6)

    macro = acc["macro_average"]
    assert macro["languages"] == ["en", "zh", "es", "ar", "hi"]
    assert macro["missing"] == ["fr"]
    assert macro["accuracy"] == pytest.approx((0.75 + 0.25 + 0.8 + 0.5 + 1 / 3) / 5)


def test_confidence_intervals_hold_their_estimate_and_are_seeded() -> None:
    a = build_report(results_from(SPEC), bootstrap_samples=400, seed=3)["accuracy"]
    b = build_report(results_from(SPEC), bootstrap_samples=400, seed=3)["accuracy"]
    assert a == b
    blocks = [*a["sources"].values(), *a["languages"].values()]
    blocks += [a["apollo_average"], a["macro_average"]]
    for block in blocks:
        lo, hi = block["ci95"]
        assert 0.0 <= lo <= block["accuracy"] <= hi <= 1.0
    # An average over several sources is less uncertain than its widest source.
    width = {k: v["ci95"][1] - v["ci95"][0] for k, v in a["sources"].items()}
    macro = a["macro_average"]["ci95"]
    assert macro[1] - macro[0] < max(width.values())


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    # 100 items, 70 right: 0.70 +- 1.96 * sqrt(0.7 * 0.3 / 100) = [0.610, 0.790].
    report = build_report(
        results_from({"headqa": [1] * 70 + [0] * 30}), bootstrap_samples=4000, seed=0
    )
    lo, hi = report["accuracy"]["sources"]["headqa"]["ci95"]
    assert lo == pytest.approx(0.610, abs=0.02)
    assert hi == pytest.approx(0.790, abs=0.02)


def test_no_bootstrap_gives_no_intervals() -> None:
    report = build_report(results_from(SPEC), bootstrap_samples=0)
    assert report["accuracy"]["macro_average"]["ci95"] is None
    assert report["accuracy"]["sources"]["headqa"]["ci95"] is None


def test_sources_outside_the_map_are_reported_under_their_name() -> None:
    report = build_report(results_from({"my-exam": [1, 0], "medqa-usmle": [1, 1]}), 100)
    acc = report["accuracy"]
    assert acc["sources"]["my-exam"]["accuracy"] == 0.5
    assert acc["languages"]["en"]["sources"] == ["medqa-usmle", "my-exam"]
    assert acc["languages"]["en"]["accuracy"] == pytest.approx(0.75)
    assert list(acc["apollo_average"]["columns"]) == ["USMLE"]


def test_length_normalised_accuracy_is_a_second_block() -> None:
    rows = results_from({"headqa": [1, 0, 0, 0]})
    for row, norm in zip(rows, [True, True, False, True], strict=True):
        row["correct_norm"] = norm
    report = build_report(rows, 100)
    assert report["accuracy"]["sources"]["headqa"]["accuracy"] == 0.25
    assert report["accuracy_norm"]["sources"]["headqa"]["accuracy"] == 0.75
    assert "accuracy_norm" not in build_report(results_from(SPEC), 100)


def test_a_source_in_two_languages_is_an_error() -> None:
    rows = results_from({"headqa": [1, 0]})
    rows[1]["language"] = "fr"
    with pytest.raises(ValueError, match="headqa.*headqa:1"):
        build_report(rows)


def test_markdown_lists_every_source_and_the_averages() -> None:
    report = build_report(results_from(SPEC), 200)
    text = render_markdown(report)
    for source in SPEC:
        assert f"| {source} |" in text
    assert "| medqa-mcmle | zh | 2 | 0 | 0 | 0.0 |" in text  # items, multi-answer, correct
    assert "| six-language macro | en, zh, es, ar, hi | 52.7 |" in text
    assert " | ".join(APOLLO_COLUMNS) in text
    assert "answer not extractable: 3" in text


def test_multi_answer_items_are_counted_per_source_and_any_answer_letter_counts() -> None:
    from medbase_ray.eval.scoring import is_correct

    item = {"answer": "BCDE"}
    assert is_correct("D", item) and not is_correct("A", item) and not is_correct(None, item)
    # Apollo's key is answer[1] of "(BCDE)": only B.
    assert is_correct("B", item, apollo_compat=True) and not is_correct("D", item, True)
    rows = results_from({"cmexam": [1, 0, 1], "medqa-mcmle": [1, 0]})
    for row in rows:
        row["language"] = "zh"
    rows[0]["answer"], rows[1]["answer"] = "BCDE", "AC"
    report = build_report(rows, 0)
    sources = report["accuracy"]["sources"]
    assert sources["cmexam"]["multi_answer"] == 2 and sources["medqa-mcmle"]["multi_answer"] == 0
    assert "| cmexam | zh | 3 | 2 | 2 | 66.7 |" in render_markdown(report)


def test_apollo_compat_drops_zero_correct_sources_from_the_averages_and_says_so() -> None:
    default = build_report(results_from(SPEC), 0)["accuracy"]
    report = build_report(results_from(SPEC), 0, apollo_compat=True, skipped={"headqa": 2})
    compat = report["accuracy"]
    assert (
        compat["dropped_zero_correct"] == ["medqa-mcmle"] and default["dropped_zero_correct"] == []
    )
    assert compat["sources"]["medqa-mcmle"]["accuracy"] == 0.0  # still listed
    assert compat["languages"]["zh"]["accuracy"] == 0.5  # cmb-single alone
    assert default["languages"]["zh"]["accuracy"] == 0.25
    assert "MCMLE" in compat["apollo_average"]["missing"]
    assert compat["apollo_average"]["accuracy"] == pytest.approx(
        (0.75 + 0.5 + 0.8 + 0.5 + 1 / 3) / 5
    )
    text = render_markdown(report)
    assert "Left out of the averages (no correct answer, as Apollo): medqa-mcmle" in text
    assert "headqa 2" in text and report["skipped_long_prompts"] == {"headqa": 2}


def test_medbase_columns_and_published_rows_beside_the_run() -> None:
    report = build_report(results_from(SPEC), 0)
    medbase = report["accuracy"]["medbase_average"]
    assert set(medbase["columns"]) == {
        "MedQA-USMLE", "PubMedQA", "MMLU-Medical", "MedQA-MCMLE", "CMB-single"
    }  # fmt: skip
    assert medbase["missing"] == ["MedMCQA", "CMMLU-Medical", "CExam"]
    assert medbase["accuracy"] == pytest.approx((0.75 + 1.0 + 0.5 + 0.0 + 0.5) / 5)
    published = published_tables()
    assert published["medbase"]["columns"] == list(MEDBASE_COLUMNS)
    for table in published.values():
        assert table["source"]
        for values in table["rows"].values():
            assert len(values) == len(table["columns"])
    text = render_markdown(report)
    assert "| this run | 75.0 | - | 100.0 | 50.0 | 0.0 | 50.0 | - | - | 55.0 |" in text
    assert (
        "| Medbase-1.8B (published) | 45.01 | 48.00 | 53.00 | 53.39 | 76.15 | 56.15 | 57.46 | 61.50 | |"
        in text
    )
