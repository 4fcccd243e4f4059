"""`run_eval` in-process on the embedded tiny model: outputs, scores, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medbase_ray.config import PipelineConfig, load_config
from medbase_ray.corpus.records import parse_options
from medbase_ray.eval.extract import extract_answer
from medbase_ray.eval.prompts import EvalError
from medbase_ray.eval.runner import run_eval


def config(bench_dir: Path, tiny_dir: Path, *overrides: str) -> PipelineConfig:
    return load_config(
        preset="tiny",
        overrides=[
            f"eval.benchmark={bench_dir}",
            f"model.name_or_path={tiny_dir}",
            "eval.bootstrap_samples=200",
            "eval.cpu_threads=1",  # a shared 2-core machine: see EvalConfig.cpu_threads
            "eval.max_in_flight=4",
            *overrides,
        ],
    )


def read_results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_loglikelihood_run_writes_results_report_and_resumes(
    bench_dir: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    cfg = config(bench_dir, tiny_dir, "eval.mode=loglikelihood", "eval.k_shot=1")
    out = tmp_path / "eval"
    report = run_eval(cfg, out_dir=str(out))

    for name in ("results.jsonl", "report.json", "report.md", "wrong_items.jsonl", "_SUCCESS"):
        assert (out / name).exists(), name
    results = read_results(out)
    assert len(results) == report["items"] == 8
    for row in results:
        letters = list(parse_options(row["options"]))
        assert list(row["scores"]) == letters
        assert all(lp < 0 for lp in row["scores"].values())
        assert row["prediction"] == max(letters, key=lambda x: row["scores"][x])
        assert row["correct"] == (row["prediction"] == row["answer"])
        assert row["n_shots"] == 1
    wrong = [json.loads(x) for x in (out / "wrong_items.jsonl").read_text().splitlines()]
    assert {w["id"] for w in wrong} == {r["id"] for r in results if not r["correct"]}
    assert json.loads((out / "report.json").read_text()) == report
    assert report["unextractable"] == 0
    assert set(report["accuracy"]["macro_average"]["languages"]) == {
        "en", "zh", "es", "fr", "ar", "hi"
    }  # fmt: skip

    # Interrupted after 3 items (and a torn 4th line): the re-run scores only the rest.
    by_id = {r["id"]: r for r in results}
    kept = results[:3]
    lines = [json.dumps({**r, "marker": "kept"}, ensure_ascii=False) for r in kept]
    (out / "results.jsonl").write_text("\n".join(lines) + '\n{"id": "te')
    for name in ("_SUCCESS", "report.json"):
        (out / name).unlink()
    resumed = run_eval(cfg, out_dir=str(out))
    again = read_results(out)
    assert len(again) == 8 and resumed["run"]["scored_now"] == 5
    assert [r.get("marker") for r in again[:3]] == ["kept"] * 3  # not scored again
    for row in again[3:]:
        assert row["scores"] == pytest.approx(by_id[row["id"]]["scores"], abs=1e-5)
    assert resumed["accuracy"]["sources"] == report["accuracy"]["sources"]

    # Complete: a re-run returns the report without scoring anything.
    assert run_eval(cfg, out_dir=str(out))["run"]["scored_now"] == 5
    # Another setup on the same directory is refused rather than mixed in.
    with pytest.raises(EvalError, match="differs in: k_shot"):
        run_eval(
            config(bench_dir, tiny_dir, "eval.mode=loglikelihood", "eval.k_shot=2"),
            out_dir=str(out),
        )


def test_loglikelihood_equals_a_direct_forward(bench_dir: Path, tiny_dir: Path) -> None:
    """The batched, left-padded, logits_to_keep path equals one plain forward per option."""
    import asyncio

    import torch

    from medbase_ray.eval.lm import InProcessLM, torch_threads
    from medbase_ray.eval.prompts import build_prompt, render_apollo
    from medbase_ray.eval.runner import load_benchmark

    cfg = config(bench_dir, tiny_dir, "eval.mode=cloze", "eval.k_shot=1")
    items, dev, _, _ = load_benchmark(cfg.eval)
    lm = InProcessLM.load(str(tiny_dir), cpu_threads=1)
    tok, model = lm.tokenizer, lm.model
    for mode, chosen in (("loglikelihood", (items[1], items[3])), ("cloze", (items[3], items[6]))):
        for item in chosen:  # 5 options (en), zh, ar
            p = build_prompt(
                item, dev, mode=mode, k_shot=1, max_prompt_tokens=4096, seed=0,
                render=render_apollo, count_tokens=len,
            )  # fmt: skip
            got = asyncio.run(lm.continuation_logprobs(p.context, list(p.continuations.values())))
            for cont, value in zip(p.continuations.values(), got, strict=True):
                enc = tok(p.context + cont, return_offsets_mapping=True)
                ids = enc["input_ids"]
                # The continuation is scored from the token holding its first character
                # (Qwen2's split joins "Assistant:" to the option's first word: ":Bone").
                first = next(
                    i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > len(p.context)
                )
                assert 0 < first < len(ids)
                with torch.inference_mode(), torch_threads(1):
                    logits = model(torch.tensor([ids])).logits[0].float()
                logprobs = torch.log_softmax(logits, -1)
                expected = sum(logprobs[i - 1, ids[i]].item() for i in range(first, len(ids)))
                assert value == pytest.approx(expected, abs=1e-4)


def test_cloze_reports_length_normalised_accuracy(
    bench_dir: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    cfg = config(bench_dir, tiny_dir, "eval.mode=cloze", "eval.k_shot=1")
    report = run_eval(cfg, out_dir=str(tmp_path / "cloze"))
    results = read_results(tmp_path / "cloze")
    for row in results:
        options = parse_options(row["options"])
        norm = {k: v / len(options[k]) for k, v in row["scores"].items()}
        assert row["prediction_norm"] == max(norm, key=norm.get)
        assert row["correct_norm"] == (row["prediction_norm"] == row["answer"])
    n_norm = sum(r["correct_norm"] for r in results if r["source"] == "headqa")
    assert report["accuracy_norm"]["sources"]["headqa"]["correct"] == n_norm
    assert "Length-normalised accuracy" in (tmp_path / "cloze" / "report.md").read_text()


def test_generate_mode_extracts_from_the_response(
    bench_dir: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    cfg = config(
        bench_dir, tiny_dir, "eval.mode=generate", "eval.k_shot=0",
        "eval.max_new_tokens=6", "eval.min_new_tokens=6",
    )  # fmt: skip
    report = run_eval(cfg, out_dir=str(tmp_path / "gen"))
    results = read_results(tmp_path / "gen")
    for row in results:
        assert isinstance(row["response"], str) and row["scores"] == {}
        options = parse_options(row["options"])
        assert row["prediction"] == extract_answer(row["response"], row["language"], options)
    assert report["unextractable"] == sum(r["prediction"] is None for r in results)
    assert report["run"]["max_new_tokens"] == 6
    # Each response is the text of min_new_tokens (6) generated tokens, not an early stop.
    check_generated_tokens(tiny_dir, results, min_new_tokens=6)


def check_generated_tokens(model_dir: Path, results: list[dict], min_new_tokens: int) -> None:
    """Every response is non-empty and decodes at least `min_new_tokens` tokens that the
    model generates greedily for the item's prompt (the token count, not re-encoding)."""
    import torch

    from medbase_ray.eval.prompts import build_prompt, render_apollo
    from medbase_ray.models.loading import load_model, load_tokenizer

    tok, model = load_tokenizer(str(model_dir)), load_model(str(model_dir)).eval()
    for row in results:
        assert row["response"].strip(), row["id"]
        p = build_prompt(
            row, [], mode="generate", k_shot=0, max_prompt_tokens=4096, seed=0,
            render=render_apollo, count_tokens=len,
        )  # fmt: skip
        ids = tok(p.context, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, max_new_tokens=min_new_tokens, min_new_tokens=min_new_tokens,
                do_sample=False, pad_token_id=tok.pad_token_id,
            )  # fmt: skip
        new = out[0, ids.shape[1] :]
        assert len(new) >= min_new_tokens
        assert row["response"].startswith(tok.decode(new, skip_special_tokens=True))


def test_a_uri_stage_directory_is_written_through_a_local_copy(
    bench_dir: Path, tiny_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MEDBASE_CACHE", str(tmp_path / "cache"))
    cfg = config(bench_dir, tiny_dir, "eval.mode=loglikelihood", "eval.k_shot=0")
    uri = f"file://{tmp_path}/bucket/run/eval"
    report = run_eval(cfg, out_dir=uri)
    remote = tmp_path / "bucket" / "run" / "eval"
    assert (remote / "_SUCCESS").exists()
    assert len(read_results(remote)) == 8
    assert json.loads((remote / "report.json").read_text()) == report
    assert json.loads((remote / "_SUCCESS").read_text()) == report  # the summary, last
    assert (remote / "fingerprint.json").exists() and (remote / "config.yaml").exists()
    # A re-run reads the finished stage's summary and returns it, scoring nothing.
    (remote / "_SUCCESS").write_text(json.dumps({**report, "marker": 1}))
    assert run_eval(cfg, out_dir=uri)["marker"] == 1
    # An interrupted remote run resumes from the results sent back to the URI.
    lines = (remote / "results.jsonl").read_text().splitlines()
    (remote / "results.jsonl").write_text("\n".join(lines[:3]) + "\n")
    (remote / "_SUCCESS").unlink()
    assert run_eval(cfg, out_dir=uri)["run"]["scored_now"] == 5
    assert len(read_results(remote)) == 8


def test_apollo_compat_run_uses_apollos_prompts_shots_and_scorer(
    bench_dir: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    from medbase_ray.eval.apollo import build_apollo_prompts, extract_apollo_answer
    from medbase_ray.eval.prompts import render_apollo
    from medbase_ray.eval.runner import load_benchmark

    cfg = config(
        bench_dir, tiny_dir, "eval.mode=generate", "eval.apollo_compat=true", "eval.k_shot=1",
        "eval.max_new_tokens=2", "eval.min_new_tokens=2",
    )  # fmt: skip
    report = run_eval(cfg, out_dir=str(tmp_path / "apollo"))
    assert report["scoring"] == "apollo" and report["run"]["apollo_compat"] is True
    items, _, _, _ = load_benchmark(cfg.eval)
    prompts, skipped = build_apollo_prompts(items, 1, 0, render_apollo)
    assert skipped == {} and report["skipped_long_prompts"] == {}
    for row in read_results(tmp_path / "apollo"):
        assert row["prediction"] == extract_apollo_answer(row["response"])
        assert row["correct"] == (row["prediction"] == row["answer"][0])
        # Shots come from the item's own source in the benchmark split (one item per
        # source here, so none), as Apollo's code draws them.
        assert row["n_shots"] == prompts[row["id"]].n_shots == 0
    with pytest.raises(EvalError, match="eval.mode=generate"):
        run_eval(
            config(bench_dir, tiny_dir, "eval.apollo_compat=true"), out_dir=str(tmp_path / "x")
        )


@pytest.mark.parametrize("mode", ["loglikelihood", "cloze"])
def test_batches_score_what_one_item_per_forward_scores(
    bench_dir: Path, tiny_dir: Path, tmp_path: Path, mode: str
) -> None:
    """Items scored in batches (left-padded prompts of different lengths in one forward)
    get the scores they get one at a time; the batches are longest prompt first, within
    the item and token caps."""
    from medbase_ray.eval.runner import item_batches

    runs = {}
    for size in (1, 3):
        cfg = config(bench_dir, tiny_dir, f"eval.mode={mode}", "eval.k_shot=1",
                     f"eval.batch_size={size}")  # fmt: skip
        run_eval(cfg, out_dir=str(tmp_path / f"bs{size}"))
        runs[size] = {r["id"]: r for r in read_results(tmp_path / f"bs{size}")}
    assert runs[1].keys() == runs[3].keys() and len(runs[1]) == 8
    for key, row in runs[3].items():
        assert row["scores"] == pytest.approx(runs[1][key]["scores"], abs=1e-5), key
        assert row["prediction"] == runs[1][key]["prediction"]
    lengths = {r["id"]: r["prompt_tokens"] for r in runs[1].values()}
    assert len(set(lengths.values())) > 1  # prompts of different lengths: padding used
    prompts = {i: type("P", (), {"n_tokens": n})() for i, n in lengths.items()}
    items = [{"id": i} for i in lengths]
    batches = item_batches(items, prompts, 3, max_tokens=10**6)
    assert [len(b) for b in batches] == [3, 3, 2]
    flat = [lengths[i["id"]] for b in batches for i in b]
    assert flat == sorted(lengths.values(), reverse=True)
    longest = max(lengths.values())
    capped = item_batches(items, prompts, 8, max_tokens=2 * longest)
    assert all(lengths[b[0]["id"]] * len(b) <= 2 * longest for b in capped)
    assert sum(map(len, capped)) == 8 and item_batches(items, prompts, 3, 10**6) == batches
