"""The HTML run report: every section and figure for a run holding every stage, the
sections that have nothing to show for a partial run, and `medbase report`.

The run directory is written here in the stages' output formats (StageOutput's
`_SUCCESS` summaries, manifest.json, metrics.csv, results.json, report.json); the
end-to-end test (tests/test_pipeline.py) checks the report of a real run.
"""

from __future__ import annotations

import base64
import csv
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medbase_ray.cli import app
from medbase_ray.corpus.languages import LANGUAGES
from medbase_ray.report.build import SECTIONS, render_report, token_groups, write_report
from medbase_ray.report.collect import collect_run
from medbase_ray.stage import StageOutput
from medbase_ray.train.metrics import CSV_COLUMNS

FIGURES = ("tokens-by-language", "training-curves", "tune-trials", "accuracy")
SEQ_LEN = 64


def _eval_report(base: float) -> dict:
    languages = {
        lang: {"sources": [f"bench-{lang}"], "accuracy": base + 0.05 * i,
               "ci95": [base + 0.05 * i - 0.1, base + 0.05 * i + 0.1]}
        for i, lang in enumerate(LANGUAGES)
    }  # fmt: skip
    return {
        "items": 306,
        "accuracy": {
            "languages": languages,
            "macro_average": {"accuracy": base + 0.125, "ci95": [base + 0.1, base + 0.15]},
        },
        "run": {"mode": "cloze", "k_shot": 0, "model": "m", "benchmark": "test.json"},
    }


def write_rewrite(run: Path) -> None:
    summary = {"rows_read": 24, "in": 24, "out": 3, "rejected": 21,
               "rejected_by_reason": {"unparseable": 15, "too_short": 6},
               "by_task": {"qa": {"out": 3, "rejected": 21}}}  # fmt: skip
    StageOutput(run / "rewrite").complete(summary)


def write_clean(run: Path) -> None:
    total = {"in": 120, "contaminated": 2, "removed_contaminated": 2, "exact_duplicate": 3,
             "near_duplicate": 1, "invalid": 0, "kept": 114}  # fmt: skip
    StageOutput(run / "clean").complete({"total": total})


def write_prepared(run: Path) -> None:
    out = StageOutput(run / "prepared")
    sources = {
        f"{src}_{lang}": {"source": src, "language": lang, "samples": 10, "rows": 4,
                          "real_tokens": 200 + i, "rejected": 0, "shards": []}
        for i, lang in enumerate(LANGUAGES) for src in ("medicalGuideline", "patient")
    }  # fmt: skip
    out.write_json(
        {"seq_len": SEQ_LEN, "packing": "best_fit", "chat_format": "apollo",
         "tokenizer": {"name_or_path": "tiny"}, "sources": sources, "totals": {}},
        "manifest.json",
    )  # fmt: skip
    out.write_text("prepare:\n  seq_len: 64\n", "config.yaml")
    out.complete({"output_dir": str(run / "prepared")})


def write_train(run: Path, steps: int = 12) -> None:
    out = StageOutput(run / "train")
    path = out.local_path() / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for step in range(1, steps + 1):
            writer.writerow({"step": step, "loss": 9.0 - 0.5 * step, "lr": 1e-3 * min(1, step / 3)})
    out.complete({"steps": steps, "final": {"loss": 3.0},
                  "mixture": {"language_shares": dict.fromkeys(LANGUAGES, 1 / 6)}})  # fmt: skip


def write_tune(run: Path) -> None:
    out = StageOutput(run / "tune")
    trials = [
        {"trial": f"t_0000{i}", "origin": name, "shares": dict.fromkeys(LANGUAGES, 1 / 6),
         "dev_accuracy": acc, "loss": 5.0}
        for i, (name, acc) in enumerate((("natural", 0.31), ("temperature", 0.29)))
    ]  # fmt: skip
    failed = [{"trial": "t_00002", "origin": "random", "error": "Traceback ...\nValueError: boom"}]
    out.write_json({"metric": "dev_accuracy", "mode": "max", "trials": trials,
                    "failed": failed, "best": trials[0]}, "results.json")  # fmt: skip
    out.complete({"metric": "dev_accuracy"})


def write_evals(run: Path) -> None:
    for name, base in (("untrained", 0.2), ("trained", 0.45)):
        StageOutput(run / "eval" / name).write_json(_eval_report(base), "report.json")


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "small"
    for write in (write_rewrite, write_clean, write_prepared, write_train, write_tune, write_evals):
        write(run)
    return run


def sections(page: str) -> dict[str, str]:
    found = re.findall(r'<section id="([a-z]+)">(.*?)</section>', page, flags=re.S)
    return dict(found)


def figures(page: str) -> dict[str, bytes]:
    pattern = r'data-figure="([a-z-]+)"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"'
    return {name: base64.b64decode(data) for name, data in re.findall(pattern, page)}


def test_full_run_has_every_section_and_figure(full_run: Path) -> None:
    path = write_report(str(full_run))
    assert path == str(full_run / "report.html")
    page = Path(path).read_text(encoding="utf-8")
    found = sections(page)
    assert list(found) == list(SECTIONS)
    assert "No " not in "".join(found.values())  # nothing reported missing
    pngs = figures(page)
    assert sorted(pngs) == sorted(FIGURES)
    assert all(png.startswith(b"\x89PNG") and len(png) > 2000 for png in pngs.values())
    # self-contained: no other file or network resource is referenced
    assert not re.search(r'(src|href)="(?!data:)', page)
    # the figures the sections state, as written in the run
    assert "unparseable" in found["data"] and ">21<" in found["data"]
    assert "exact_duplicate" in found["data"] and ">114<" in found["data"]
    assert "natural" in found["tune"] and "0.310" in found["tune"]
    assert "1 trial(s) failed" in found["tune"] and "ValueError: boom" in found["tune"]
    assert "+25.0" in found["accuracy"]  # macro 32.5 -> 57.5
    assert "32.5 [30.0, 35.0]" in found["accuracy"]  # untrained macro and its interval, in %
    assert "seq_len: 64" in found["commands"]


def test_token_statistics_per_language_and_source(full_run: Path) -> None:
    manifest = collect_run(str(full_run)).manifest
    by_lang = token_groups(manifest, "language")
    assert list(by_lang) == sorted(LANGUAGES)
    en = by_lang["en"]
    assert en["records"] == 20 and en["rows"] == 8 and en["real_tokens"] == 400
    assert en["padding_tokens"] == 8 * SEQ_LEN - 400
    assert len(token_groups(manifest, "source")) == 2 * len(LANGUAGES)


def test_partial_run_reports_what_it_has(tmp_path: Path) -> None:
    run = tmp_path / "partial"
    write_prepared(run)
    page = render_report(collect_run(str(run)))
    found = sections(page)
    assert list(found) == list(SECTIONS)
    assert "No rewrite stage in this run." in found["data"]
    assert "No clean stage in this run." in found["data"]
    for key, what in (("training", "training run"), ("tune", "tune sweep"),
                      ("accuracy", "evaluation")):  # fmt: skip
        assert f"No {what} in this run." in found[key]
    assert list(figures(page)) == ["tokens-by-language"]


def test_report_command_writes_the_file_and_refuses_a_missing_run(full_run: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(full_run)])
    assert result.exit_code == 0, result.output
    assert (full_run / "report.html").stat().st_size > 10_000
    missing = runner.invoke(app, ["report", str(full_run / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
