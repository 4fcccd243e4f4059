"""`run_rewrite`: raw medical text -> QA pairs / dialogues (-> translations) through a
teacher LLM, resumable, every item ending in exactly one output or one reject.

    medbase rewrite --base-url http://127.0.0.1:8000/v1 --task qa --task dialogue
    medbase rewrite --dry-run                 # requests and tokens it would spend

One Ray Data pass over the items not written yet: qa / dialogue items from the raw
text, each going on to translate the conversation it makes into the target languages;
translate items for conversations an earlier run wrote (or, with tasks == [translate]
alone, for the input read as conversations). Ids are deterministic, so what is written
is skipped; the ids written must equal the ids expected, each once, or the run fails.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from medbase_ray.corpus.readers import read_conversations, read_raw_texts, sample_dir
from medbase_ray.corpus.rejects import RejectSink
from medbase_ray.rewrite.estimate import estimate_items
from medbase_ray.rewrite.prompts import PromptSet, load_prompts
from medbase_ray.rewrite.store import RewriteStore, ShardBuffer, task_of
from medbase_ray.rewrite.tasks import GENERATE_TASKS, Checks, generate_items, translate_items
from medbase_ray.rewrite.teacher import (
    NO_KEY,
    TeacherSettings,
    TeacherUnusable,
    Usage,
    check_teacher,
)

if TYPE_CHECKING:  # medbase_ray.config imports this package's config: no cycle at runtime
    from medbase_ray.config import PipelineConfig

log = logging.getLogger(__name__)


def _input_path(cfg: PipelineConfig) -> Path:
    return Path(cfg.rewrite.input) if cfg.rewrite.input else sample_dir() / "apollo"


def _read_inputs(cfg: PipelineConfig) -> tuple[list[dict], list[dict], int]:
    """(records, reject rows of bad input rows, rows read). Bad rows are rejected, not fatal."""
    sink = RejectSink()
    translate_only = cfg.rewrite.tasks == ["translate"]
    reader = read_conversations if translate_only else read_raw_texts
    records, counts = reader(_input_path(cfg), on_error="reject", rejects=sink)
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        if r["id"] in seen:
            raise ValueError(
                f"{_input_path(cfg)}: input id {r['id']!r} appears twice (records {seen[r['id']]} "
                f"and {i}); ids must be unique, the output ids are made from them"
            )
        seen[r["id"]] = i
    bad = []
    for rej in sink.rows:
        input_id = f"{rej.file}:{rej.index}" if rej.index is not None else rej.file
        bad.append(
            {
                "id": f"{input_id}#input",
                "input_id": input_id,
                "task": "input",
                "source": None,
                "language": None,
                "reason": "bad_input",
                "detail": f"field {rej.field!r}: {rej.reason}",
                "raw": rej.raw,
                **{"requests": 0, "prompt_tokens": 0, "completion_tokens": 0},
            }
        )
    return records, bad, counts.read


def _check_prompts(prompts: PromptSet, records: list[dict], cfg: PipelineConfig) -> None:
    """Every language the run needs has its prompts; one error naming all gaps."""
    rc = cfg.rewrite
    langs = {r["language"] for r in records}
    needed = {"qa": ["qa_question", "qa_answer"], "dialogue": ["dialogue"]}
    gaps = [
        f"{kind}: {', '.join(missing)}"
        for task in rc.tasks
        for kind in needed.get(task, [])
        if (missing := prompts.missing(kind, langs))
    ]
    if "translate" in rc.tasks and (
        missing := prompts.missing("translate", langs | set(rc.target_languages))
    ):
        gaps.append(f"translate: {', '.join(missing)}")
    if gaps:
        raise ValueError(f"prompt set {prompts.path} lacks prompts for: " + "; ".join(gaps))


def _teacher_settings(cfg: PipelineConfig) -> TeacherSettings:
    rc = cfg.rewrite
    key = os.environ.get(rc.api_key_env)
    if not key:
        log.warning("$%s is not set: sending no API key to %s", rc.api_key_env, rc.base_url)
    return TeacherSettings(
        base_url=rc.base_url,
        model=rc.model,
        api_key=SecretStr(key or NO_KEY),
        max_in_flight=rc.max_in_flight,
        qps=rc.qps,
        max_retries=rc.max_retries,
        timeout_s=rc.timeout_s,
        temperature=rc.temperature,
        max_tokens=rc.max_tokens,
    )


def run_rewrite(cfg: PipelineConfig, dry_run: bool = False) -> dict[str, Any]:
    """Run (or, with dry_run, price) the rewrite stage; returns the summary.

    Summary: `in` items (one per input and task, one per conversation and target
    language for translate, one per bad input row) = `out` + `rejected`; `skipped` were
    done by an earlier run; `usage` is this run's tokens, `usage_all_runs` those of
    every shard written so far.
    """
    started = time.monotonic()
    rc = cfg.rewrite
    prompts = load_prompts(rc.prompts_file)
    records, bad_rows, rows_read = _read_inputs(cfg)
    _check_prompts(prompts, records, cfg)
    store = RewriteStore(cfg.run.stage_dir("rewrite"))
    done = {i for i, _ in store.statuses()}
    translate_only = rc.tasks == ["translate"]
    targets = rc.target_languages if "translate" in rc.tasks else []
    generate = [t for t in rc.tasks if t in GENERATE_TASKS]
    generated = [] if translate_only else generate_items(records, generate, targets)

    def translations() -> list[dict]:
        """Translate items of the conversations there are: the input's (translate
        alone) or those qa / dialogue items have written so far."""
        if translate_only:
            return translate_items(records, targets)
        ids = {i["id"] for i in generated}
        return translate_items([c for c in store.read_conversations() if c["id"] in ids], targets)

    new_bad = [r for r in bad_rows if r["id"] not in done]
    pending = [i for i in generated if i["id"] not in done]
    for item in pending:  # translations chained to a new conversation, unless written
        item["targets"] = [t for t in item["targets"] if f"{item['id']}#translate-{t}" not in done]
    pending += [i for i in translations() if i["id"] not in done]
    if dry_run:
        figures = estimate_items(pending, prompts, rc.max_tokens, rc.max_input_chars)
        known = {r["id"] for r in bad_rows} | {i["id"] for i in generated + translations()}
        # at most: translations of conversations not made yet count as if all were made
        chained = figures.pop("chained_items")
        return {
            "dry_run": True,
            "rows_read": rows_read,
            "in": len(known) + chained,
            "skipped": len(done & known),
            "pending": len(new_bad) + figures.pop("items") + chained,
            **figures,
        }

    from medbase_ray.config import dump_config
    from medbase_ray.ray_runtime import init_ray
    from medbase_ray.rewrite.ray_data import run_items_on_ray

    settings = _teacher_settings(cfg)
    if pending:
        check_teacher(settings)  # a wrong URL or key fails here, before anything is written
    store.prepare(dump_config(cfg))
    usage = Usage()
    shards = ShardBuffer(store, rc.rows_per_shard, rc.flush_s)

    def write(results: list[dict]) -> None:
        for r in results:
            usage.add(Usage(r["requests"], r["prompt_tokens"], r["completion_tokens"]))
        shards.add(results)

    write(new_bad)
    try:
        if pending:
            init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
            run_items_on_ray(
                pending,
                settings,
                rc.prompts_file,
                checks=Checks(
                    rc.min_turn_chars, rc.max_turn_chars, rc.max_input_chars, rc.chrf_threshold
                ),
                num_actors=rc.num_actors,
                actor_num_cpus=rc.actor_num_cpus,
                rows_per_block=rc.rows_per_block,
                on_results=write,
            )
    except Exception as exc:
        if unusable := _find_cause(exc, TeacherUnusable):
            raise TeacherUnusable(str(unusable).strip().splitlines()[0]) from None
        raise
    finally:
        shards.flush()  # keep what finished, whatever stopped the run
    expected = {r["id"] for r in bad_rows} | {i["id"] for i in generated + translations()}
    summary = _summarize(store, expected)
    summary.update(
        rows_read=rows_read,
        skipped=len(done & expected),
        usage=usage.as_dict(),
        usage_all_runs=store.usage().as_dict(),
        elapsed_s=round(time.monotonic() - started, 3),
    )
    store.mark_success(summary)
    return summary


def _find_cause(exc: BaseException, kind: type[Exception]) -> BaseException | None:
    """`kind` in the chain of `exc`, or in the text Ray wraps a worker's error in."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    marker = f"{kind.__name__}: "
    if marker in text:
        return kind(text[text.rindex(marker) + len(marker) :])
    return None


def _summarize(store: RewriteStore, expected: set[str]) -> dict[str, Any]:
    """Counts of the written rows of this run's items; refuses duplicates or gaps."""
    rows = [(i, reason) for i, reason in store.statuses() if i in expected]
    counts = Counter(i for i, _ in rows)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(expected - set(counts))
    if duplicates or missing:
        raise RuntimeError(
            f"rewrite output under {store.root} is inconsistent: "
            f"{len(duplicates)} duplicated id(s) {duplicates[:5]}, {len(missing)} missing {missing[:5]}"
        )
    by_task: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    for item, reason in rows:
        task = task_of(item)
        by_task.setdefault(task, Counter())["rejected" if reason else "out"] += 1
        if reason:
            reasons[reason] += 1
    n_rejected = sum(reasons.values())
    return {
        "output_dir": str(store.root),
        "conversations_dir": str(store.conversations),
        "in": len(expected),
        "out": len(expected) - n_rejected,
        "rejected": n_rejected,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "by_task": {
            t: {"out": c["out"], "rejected": c["rejected"]} for t, c in sorted(by_task.items())
        },
    }
