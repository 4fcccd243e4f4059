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

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from medbase_ray.config import PipelineConfig, dump_config
from medbase_ray.corpus.readers import read_conversations, read_raw_texts, sample_dir
from medbase_ray.corpus.rejects import AllRejected, RejectSink, count_reasons
from medbase_ray.ray_runtime import init_ray
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
from medbase_ray.stage import StageOutput

log = logging.getLogger(__name__)


def _input_path(cfg: PipelineConfig) -> Path:
    return Path(cfg.rewrite.input) if cfg.rewrite.input else sample_dir() / "apollo"


@dataclass
class Inputs:
    """What was read: records, one reject result row per bad input row, the counts."""

    records: list[dict]
    bad_rows: list[dict]
    rows_read: int
    rows_rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        """read = kept + rejected, and the rejects by reason."""
        return {
            "rows_read": self.rows_read,
            "rows_kept": len(self.records),
            "rows_rejected": len(self.bad_rows),
            "rows_rejected_by_reason": self.rows_rejected_by_reason,
        }


def _read_inputs(cfg: PipelineConfig) -> Inputs:
    """Bad rows are rejected, not fatal; an id read twice is an error."""
    rc, sink = cfg.rewrite, RejectSink()
    reader = read_conversations if rc.tasks == ["translate"] else read_raw_texts
    origin = {"source": rc.source, "language": rc.language}
    records, counts = reader(_input_path(cfg), on_error="reject", rejects=sink, **origin)
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
    reasons = count_reasons((rej.field, rej.reason) for rej in sink.rows)
    return Inputs(records, bad, counts.read, reasons)


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
    every shard written so far; `rows_read` = `rows_kept` + `rows_rejected` (by reason).
    AllRejected when every input row was rejected.
    """
    started = time.monotonic()
    rc, out = cfg.rewrite, StageOutput.of(cfg.run, "rewrite")
    key = _inputs_key(cfg)
    if not dry_run and (complete := out.summary()) and complete.get("inputs_key") == key:
        log.info("%s is complete for this config and input: skipping rewrite", out)
        _check_not_all_rejected(complete, out)
        return complete | {"skipped": complete["in"], "usage": Usage().as_dict()}
    prompts = load_prompts(rc.prompts_file)
    inputs = _read_inputs(cfg)
    _check_prompts(prompts, inputs.records, cfg)
    store = RewriteStore(out)
    done = {i for i, _ in store.statuses()}
    generated, translations = _items(cfg, inputs, store)
    pending = _pending(generated, translations, done)
    if dry_run:
        return _dry_run(cfg, prompts, inputs, generated, translations(), pending, done)

    settings = _teacher_settings(cfg)
    if pending:
        check_teacher(settings)  # a wrong URL or key fails here, before anything is written
    store.begin(dump_config(cfg))
    usage = _write_results(cfg, settings, store, inputs.bad_rows, done, pending)
    expected = {r["id"] for r in inputs.bad_rows} | {i["id"] for i in generated + translations()}
    summary = _summarize(store, expected) | inputs.counts()
    summary.update(
        skipped=len(done & expected),
        usage=usage.as_dict(),
        usage_all_runs=store.usage().as_dict(),
        elapsed_s=round(time.monotonic() - started, 3),
        inputs_key=key,
    )
    out.complete(summary)
    _check_not_all_rejected(summary, out)
    return summary


def _items(cfg: PipelineConfig, inputs: Inputs, store: RewriteStore):
    """(qa / dialogue items, a function giving the translate items): of the input's
    conversations (translate alone) or of those qa / dialogue items wrote so far."""
    rc = cfg.rewrite
    translate_only = rc.tasks == ["translate"]
    targets = rc.target_languages if "translate" in rc.tasks else []
    generate = [t for t in rc.tasks if t in GENERATE_TASKS]
    generated = [] if translate_only else generate_items(inputs.records, generate, targets)

    def translations() -> list[dict]:
        if translate_only:
            return translate_items(inputs.records, targets)
        ids = {i["id"] for i in generated}
        return translate_items([c for c in store.read_conversations() if c["id"] in ids], targets)

    return generated, translations


def _pending(generated: list[dict], translations, done: set[str]) -> list[dict]:
    """The items not written yet; a new conversation's translations ride along with it."""
    pending = [i for i in generated if i["id"] not in done]
    for item in pending:  # translations chained to a new conversation, unless written
        item["targets"] = [t for t in item["targets"] if f"{item['id']}#translate-{t}" not in done]
    return pending + [i for i in translations() if i["id"] not in done]


def _dry_run(cfg, prompts, inputs: Inputs, generated, translations, pending, done) -> dict:
    rc = cfg.rewrite
    new_bad = [r for r in inputs.bad_rows if r["id"] not in done]
    figures = estimate_items(pending, prompts, rc.max_tokens, rc.max_input_chars)
    known = {r["id"] for r in inputs.bad_rows} | {i["id"] for i in generated + translations}
    # at most: translations of conversations not made yet count as if all were made
    chained = figures.pop("chained_items")
    summary = {
        "dry_run": True,
        **inputs.counts(),
        "in": len(known) + chained,
        "skipped": len(done & known),
        "pending": len(new_bad) + figures.pop("items") + chained,
        **figures,
    }
    if inputs.rows_read and not inputs.records:
        reasons = inputs.rows_rejected_by_reason
        raise AllRejected("rewrite --dry-run", inputs.rows_read, reasons, "none written (dry run)")
    return summary


def _write_results(cfg, settings, store, bad_rows, done, pending) -> Usage:
    """Bad input rows and the pending items' results, as shards; this run's usage."""
    rc = cfg.rewrite
    usage = Usage()
    shards = ShardBuffer(store, rc.rows_per_shard, rc.flush_s)

    def write(results: list[dict]) -> None:
        for r in results:
            usage.add(Usage(r["requests"], r["prompt_tokens"], r["completion_tokens"]))
        shards.add(results)

    write([r for r in bad_rows if r["id"] not in done])
    try:
        if pending:
            # imports Ray (a dry run, a fully done run never does)
            from medbase_ray.rewrite.ray_data import run_items_on_ray

            init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
            checks = Checks(
                rc.min_turn_chars, rc.max_turn_chars, rc.max_input_chars, rc.chrf_threshold
            )
            run_items_on_ray(
                pending,
                settings,
                rc.prompts_file,
                checks=checks,
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
    return usage


_TRANSPORT_FIELDS = {
    "base_url", "api_key_env", "max_in_flight", "qps", "max_retries", "timeout_s",
    "num_actors", "actor_num_cpus", "rows_per_block", "rows_per_shard", "flush_s",
}  # fmt: skip


def _inputs_key(cfg: PipelineConfig) -> str:
    """What a complete output was made from: the rewrite config and the input files'
    names, sizes and times. Equal: a re-run skips the stage from its summary."""
    path = _input_path(cfg)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.exists()]
    # Where the teacher is reached and how hard it is driven do not change what it
    # writes (its model name and sampling do): a re-run through another port skips.
    settings = cfg.rewrite.model_dump(mode="json", exclude=_TRANSPORT_FIELDS)
    text = json.dumps([settings, stats], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_not_all_rejected(summary: dict[str, Any], out: StageOutput) -> None:
    """AllRejected when input rows were read and none was usable. (Items the teacher's
    answers fail are rejects of the run, counted by reason; not an error.)"""
    if summary["rows_read"] and not summary["rows_kept"]:
        reasons = summary["rows_rejected_by_reason"]
        raise AllRejected("rewrite", summary["rows_read"], reasons, out.child("rejects"))


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
        "output_dir": store.root,
        "conversations_dir": store.conversations,
        "in": len(expected),
        "out": len(expected) - n_rejected,
        "rejected": n_rejected,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "by_task": {
            t: {"out": c["out"], "rejected": c["rejected"]} for t, c in sorted(by_task.items())
        },
    }
