"""`run_eval`: benchmark in, per-item results and a report out, resumable.

    medbase eval                                   # the bundled benchmark, the embedded model
    medbase eval --checkpoint runs/tiny/train/final --mode loglikelihood
    medbase eval --base-url http://127.0.0.1:8000/v1 --mode generate

Outputs in the stage directory (`<run>/eval/` unless `out_dir` says otherwise; a local
path or a URI, kept by medbase_ray.stage.StageOutput): `results.jsonl` (one eval result
per line, appended as each item finishes, so a re-run skips the ids already there),
`report.json`, `report.md`, `wrong_items.jsonl`, `config.yaml`, `fingerprint.json` (what
the results depend on: a re-run with another model, mode or benchmark refuses to mix
results), and `summary.json` and `_SUCCESS` (the report), written last.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from medbase_ray.config import PipelineConfig, dump_config
from medbase_ray.corpus.readers import read_eval_items, sample_dir
from medbase_ray.corpus.rejects import CorpusError
from medbase_ray.eval.apollo import build_apollo_prompts
from medbase_ray.eval.config import EvalConfig
from medbase_ray.eval.lm import EndpointLM, InProcessLM, LanguageModel
from medbase_ray.eval.prompts import EvalError, Prompt, build_prompt, chat_renderer, template_for
from medbase_ray.eval.report import build_report, render_markdown
from medbase_ray.eval.scoring import option_requests, row_from_logprobs, score_item
from medbase_ray.models.checkpoint_info import ModelSettings, resolve_model_settings
from medbase_ray.models.loading import load_tokenizer
from medbase_ray.stage import StageOutput

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
FINGERPRINT = "fingerprint.json"


def _split_path(root: Path, split: str) -> Path | None:
    for candidate in (root / f"{split}.json", root / split):
        if candidate.exists():
            return candidate
    return None


def resolve_benchmark(ecfg: EvalConfig) -> tuple[Path, Path | None]:
    """(items' path, shots' path or None) from `eval.benchmark` / `eval.dev_benchmark`."""
    root = Path(ecfg.benchmark) if ecfg.benchmark else sample_dir() / "xmedbench"
    if not root.exists():
        raise EvalError(f"benchmark {root} does not exist")
    if root.is_dir():
        test = _split_path(root, ecfg.split)
        if test is None:
            raise EvalError(f"benchmark {root} has no split {ecfg.split!r} ({ecfg.split}.json)")
        dev = _split_path(root, ecfg.dev_split)
    else:
        test, dev = root, None
    if ecfg.dev_benchmark:
        dev = Path(ecfg.dev_benchmark)
    if dev is not None and dev.resolve() == test.resolve():
        raise EvalError(f"the shots must come from another split than the items ({test})")
    return test, dev


def load_benchmark(ecfg: EvalConfig) -> tuple[list[dict], list[dict], Path, Path | None]:
    """Items and dev items (for shots); any bad item raises, naming file, row and field."""
    test_path, dev_path = resolve_benchmark(ecfg)
    items, _ = read_eval_items(test_path, source_languages=ecfg.source_languages)
    dev: list[dict] = []
    if ecfg.k_shot > 0:
        if dev_path is None:
            raise EvalError(
                f"k_shot={ecfg.k_shot} needs a dev split: none found beside {test_path}; "
                "set eval.dev_benchmark, or eval.k_shot=0"
            )
        dev, _ = read_eval_items(dev_path, source_languages=ecfg.source_languages)
    if not items:
        raise EvalError(f"benchmark {test_path} has no items")
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item["id"] in seen:
            raise CorpusError(
                str(test_path), i, "id", f"duplicate id {item['id']!r} (item {seen[item['id']]})"
            )
        seen[item["id"]] = i
        template_for(item["language"])  # every language needs a prompt before any work
    return items, dev, test_path, dev_path


def _digest(rows: Sequence[dict]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def fingerprint(ecfg: EvalConfig, model: str, chat_format: str, items, dev) -> dict[str, Any]:
    """Everything the per-item results depend on."""
    return {
        "model": model,
        "chat_format": chat_format,
        "mode": ecfg.mode,
        "k_shot": ecfg.k_shot,
        "max_prompt_tokens": ecfg.max_prompt_tokens,
        "max_new_tokens": ecfg.max_new_tokens if ecfg.mode == "generate" else None,
        "min_new_tokens": ecfg.min_new_tokens if ecfg.mode == "generate" else None,
        "apollo_compat": ecfg.apollo_compat,
        "seed": ecfg.seed,
        "items": _digest(items),
        "dev_items": _digest(dev),
    }


def read_done(path: Path, wanted: set[str]) -> dict[str, dict]:
    """Results already in `path`; a torn last line (a crash mid-write) is cut off."""
    if not path.exists():
        return {}
    done: dict[str, dict] = {}
    good_bytes = 0
    with path.open("rb") as f:
        lines = f.readlines()
    for n, line in enumerate(lines):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if n == len(lines) - 1:
                log.warning("%s: dropping a torn last line", path)
                break
            raise CorpusError(str(path), n, "<line>", "invalid JSON in the results file") from None
        if row.get("id") not in wanted:
            raise CorpusError(
                str(path), n, "id", f"{row.get('id')!r} is not an item of this benchmark"
            )
        done[row["id"]] = row
        good_bytes += len(line)
    if good_bytes < path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return done


def _run_coroutine(coro: Coroutine) -> Any:
    """asyncio.run, also from a caller that is itself inside an event loop (Jupyter, Serve)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def item_batches(
    items: Sequence[dict], prompts: dict[str, Prompt], batch_size: int, max_tokens: int
) -> list[list[dict]]:
    """The items, longest prompt first (as lm-eval orders its requests: a batch holds
    prompts of about one length, so little padding, and the largest batch comes first),
    cut into batches of at most `batch_size` items and `max_tokens` padded tokens. The
    batches depend on the items only: the same figures on every run."""
    order = sorted(items, key=lambda item: (-prompts[item["id"]].n_tokens, item["id"]))
    batches: list[list[dict]] = []
    for item in order:
        # Longest first: the batch's first prompt is its padded length.
        if batches and len(batches[-1]) < batch_size:
            longest = prompts[batches[-1][0]["id"]].n_tokens
            if longest * (len(batches[-1]) + 1) <= max_tokens:
                batches[-1].append(item)
                continue
        batches.append([item])
    return batches


async def score_items(
    lm: LanguageModel,
    items: Sequence[dict],
    prompts: dict[str, Prompt],
    ecfg: EvalConfig,
    results_path: Path,
    done: int = 0,
    total: int | None = None,
) -> list[dict]:
    """Score `items` with at most `max_in_flight` requests at once, appending each result.
    A backend with `continuation_logprobs_batch` (in-process, Ray actor) gets the
    loglikelihood/cloze items in batches instead (`item_batches`)."""
    limit = asyncio.Semaphore(ecfg.max_in_flight)
    out: list[dict] = []
    results_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=total or len(items), initial=done, desc=f"eval {ecfg.mode}", unit="item")
    batched = ecfg.mode != "generate" and hasattr(lm, "continuation_logprobs_batch")
    if batched:
        with results_path.open("a", encoding="utf-8") as sink, bar:
            for batch in item_batches(items, prompts, ecfg.batch_size, ecfg.max_batch_tokens):
                requests = [option_requests(prompts[item["id"]]) for item in batch]
                scored = await lm.continuation_logprobs_batch(requests)  # type: ignore[attr-defined]
                rows = [
                    row_from_logprobs(item, prompts[item["id"]], ecfg.mode, logprobs)
                    for item, logprobs in zip(batch, scored, strict=True)
                ]
                sink.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                sink.flush()
                out.extend(rows)
                bar.update(len(rows))
        return out
    with results_path.open("a", encoding="utf-8") as sink, bar:

        async def one(item: dict) -> None:
            async with limit:
                row = await score_item(
                    lm,
                    item,
                    prompts[item["id"]],
                    ecfg.mode,
                    ecfg.max_new_tokens,
                    ecfg.min_new_tokens,
                    ecfg.apollo_compat,
                )
            # The event loop runs one callback at a time: whole lines, never interleaved.
            sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            sink.flush()
            out.append(row)
            bar.update(1)

        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
                for item in items:
                    group.create_task(one(item))
        except BaseExceptionGroup as failed:
            # The first error as itself (the finished items are saved: a re-run resumes).
            raise failed.exceptions[0] from None
    return out


def _endpoint(ecfg: EvalConfig, base_url: str) -> EndpointLM:
    return EndpointLM(
        base_url,
        ecfg.model_name,
        os.environ.get(ecfg.api_key_env),  # a secret: never logged
        ecfg.max_retries,
        ecfg.request_timeout_s,
    )


def run_eval(
    cfg: PipelineConfig,
    base_url: str | None = None,
    model_path: str | None = None,
    out_dir: str | None = None,
    *,
    lm: LanguageModel | None = None,
) -> dict:
    """Evaluate a model on the benchmark of `cfg.eval`; returns the report.

    `base_url` (or `cfg.eval.base_url`): an OpenAI-compatible endpoint ("http://host:8000/v1").
    Without one, `model_path` (default `cfg.model.name_or_path`) runs in-process. The
    tokenizer of `model_path` measures and renders prompts in both cases, in the chat
    format its checkpoint was trained with unless `model.chat_format` says otherwise
    (a contradiction raises SettingsConflict). `lm` replaces both with another backend
    (the Ray layer's model actor); `lm.name` identifies it. `out_dir`: a local path or a
    URI (default `<run>/eval`).
    """
    ecfg = cfg.eval
    if ecfg.apollo_compat and ecfg.mode != "generate":
        raise EvalError(
            "eval.apollo_compat reproduces Apollo's evaluation, which generates answers: "
            f"set eval.mode=generate (it is {ecfg.mode!r})"
        )
    base_url = None if lm is not None else (base_url or ecfg.base_url)
    settings = resolve_model_settings(cfg.model, model_path)
    items, dev, test_path, _ = load_benchmark(ecfg)
    out = StageOutput.of(cfg.run, "eval", out_dir)
    return _run_coroutine(_evaluate(cfg, settings, base_url, out, items, dev, test_path, lm))


def check_fingerprint(out: StageOutput, expected: dict[str, Any]) -> None:
    """Refuse a stage directory holding results of another evaluation."""
    if not out.exists(FINGERPRINT):
        return
    before = out.read_json(FINGERPRINT)
    if before != expected:
        changed = sorted(k for k in expected if before.get(k) != expected[k])
        raise EvalError(
            f"{out} holds results of another evaluation (differs in: {', '.join(changed)});"
            " give another out_dir or remove it"
        )


def make_prompts(
    ecfg: EvalConfig, items: list[dict], dev: list[dict], render, tokenizer
) -> tuple[dict[str, Prompt], dict[str, int]]:
    """Each item's prompt, and per source the items Apollo's limit skips (apollo_compat)."""

    def count_tokens(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    if ecfg.apollo_compat:
        return build_apollo_prompts(items, ecfg.k_shot, ecfg.seed, render, count_tokens)
    prompts = {
        item["id"]: build_prompt(
            item,
            dev,
            mode=ecfg.mode,
            k_shot=ecfg.k_shot,
            max_prompt_tokens=ecfg.max_prompt_tokens,
            seed=ecfg.seed,
            render=render,
            count_tokens=count_tokens,
        )
        for item in items
    }
    return prompts, {}


async def _evaluate(
    cfg: PipelineConfig,
    settings: ModelSettings,
    base_url: str | None,
    out: StageOutput,
    items: list[dict],
    dev: list[dict],
    test_path: Path,
    lm: LanguageModel | None,
) -> dict:
    ecfg = cfg.eval
    endpoint = _endpoint(ecfg, base_url) if base_url else None
    lm = endpoint or lm
    try:
        if endpoint is not None:
            model_id = f"{base_url} {await endpoint.resolve_model()}"
        else:
            model_id = lm.name if lm is not None else settings.path
        expected = fingerprint(ecfg, model_id, settings.chat_format, items, dev)
        check_fingerprint(out, expected)
        if out.is_complete():
            log.info("%s is complete; returning its report", out)
            return out.summary()
        out.begin(dump_config(cfg))
        out.write_json(expected, FINGERPRINT)

        tokenizer = load_tokenizer(settings.tokenizer_path, cfg.model.trust_remote_code)
        if lm is None:
            lm = InProcessLM.load(
                settings.path,
                settings.dtype,
                ecfg.device,
                cfg.model.trust_remote_code,
                tokenizer,
                ecfg.cpu_threads,
            )
        render = chat_renderer(settings.chat_format, tokenizer)
        prompts, skipped = make_prompts(ecfg, items, dev, render, tokenizer)
        kept = [item for item in items if item["id"] in prompts]
        with out.local_workdir() as work:  # results.jsonl is appended to, line by line
            done = read_done(work / RESULTS, {item["id"] for item in kept})
            todo = [item for item in kept if item["id"] not in done]
            log.info("%d items, %d already scored, %d to go", len(kept), len(done), len(todo))
            start = time.perf_counter()
            new = await score_items(lm, todo, prompts, ecfg, work / RESULTS, len(done), len(kept))
            elapsed_s = time.perf_counter() - start
    finally:
        if lm is not None:
            await lm.aclose()
    by_id = {**done, **{row["id"]: row for row in new}}
    results = [by_id[item["id"]] for item in kept]
    report = build_report(results, ecfg.bootstrap_samples, ecfg.seed, ecfg.apollo_compat, skipped)
    report["run"] = run_info(ecfg, settings, model_id, base_url, test_path, prompts)
    report["run"] |= {
        "scored_now": len(new),
        "elapsed_s": round(elapsed_s, 3),
        "items_per_s": round(len(new) / elapsed_s, 3) if new and elapsed_s > 0 else None,
    }
    write_outputs(out, results, report)
    return report


def run_info(
    ecfg: EvalConfig,
    settings: ModelSettings,
    model_id: str,
    base_url: str | None,
    test_path: Path,
    prompts: dict[str, Prompt],
) -> dict[str, Any]:
    """What the report says about how it was made."""
    return {
        "mode": ecfg.mode,
        "model": model_id,
        "endpoint": base_url,
        "chat_format": settings.chat_format,
        "model_settings_from_checkpoint": list(settings.from_checkpoint),
        "trained_seq_len": settings.seq_len,
        "k_shot": ecfg.k_shot,
        "apollo_compat": ecfg.apollo_compat,
        "max_new_tokens": ecfg.max_new_tokens if ecfg.mode == "generate" else None,
        "benchmark": str(test_path),
        "split": ecfg.split,
        "over_length_prompts": sum(p.n_tokens > ecfg.max_prompt_tokens for p in prompts.values()),
    }


def write_outputs(out: StageOutput, results: list[dict], report: dict) -> None:
    """report.json, report.md, wrong_items.jsonl; then the summary and `_SUCCESS`, last."""
    out.write_json(report, "report.json")
    out.write_text(render_markdown(report), "report.md")
    wrong = (json.dumps(r, ensure_ascii=False) + "\n" for r in results if not r["correct"])
    out.write_text("".join(wrong), "wrong_items.jsonl")
    out.complete(report)
