"""The Ray layer of the clean stage: `run_clean`.

    file groups --map_batches(_annotate: read_groups, annotate_batch, write_annotated)-->
                                                    work/records, work/keys
    key partitions --map_batches(decide_partition)--> work/dups (exact), work/cand
    shards --map_batches(attach_signatures)--> work/dups (near-dup candidates)
    shards --map_batches(finish_shard)--> conversations/, rejects/, flagged/
    driver: report.json, report.md, summary.json, _SUCCESS (last)

The benchmark index is built once on the driver and put in the object store; each
worker process fetches it once per run (its first annotate task) and keeps it for the
next tasks. The driver only sees shard names and counts, and each task holds one batch,
one shard or one key partition at a time: memory does not grow with the corpus (the
work files do, on disk). An incomplete earlier output is removed and made again; a
complete one is reused when made with the same settings.

    from medbase_ray.config import load_config
    from medbase_ray.clean.pipeline import run_clean
    summary = run_clean(load_config(preset="tiny"))
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from medbase_ray import storage
from medbase_ray.clean.batch import DedupSettings, annotate_batch
from medbase_ray.clean.config import CleanConfig
from medbase_ray.clean.index import BenchmarkIndex, build_index
from medbase_ray.clean.inputs import read_groups
from medbase_ray.clean.minhash import lsh_params
from medbase_ray.clean.report import (
    build_report,
    check_counts,
    merge_shard_results,
    render_markdown,
)
from medbase_ray.clean.shards import (
    attach_signatures,
    decide_partition,
    finish_shard,
    write_annotated,
)
from medbase_ray.config import PipelineConfig, dump_config
from medbase_ray.corpus.readers import read_eval_items, sample_dir
from medbase_ray.eval.runner import resolve_benchmark
from medbase_ray.prepare.inputs import group_files, list_conversation_files
from medbase_ray.ray_runtime import init_ray
from medbase_ray.stage import StageOutput

log = logging.getLogger(__name__)
WORK = "work"
_TASKS_PER_CPU = 4  # tasks of the per-shard passes: enough to balance, few round trips


class CleanError(ValueError):
    """Inputs or settings the clean stage cannot use (named in the message)."""


def clean_inputs(cfg: PipelineConfig) -> list[str]:
    """clean.inputs, else prepare.inputs, else the bundled sample corpus."""
    inputs = list(cfg.clean.inputs or cfg.prepare.inputs) or [str(sample_dir() / "apollo")]
    remote = [i for i in inputs if i.startswith("hf:") or storage.is_uri(i)]
    if remote:
        raise CleanError(f"clean reads local conversation files; not {remote}")
    return inputs


def _origin(cfg: PipelineConfig) -> dict[str, str | None]:
    return {"source": cfg.prepare.source, "language": cfg.prepare.language}


def benchmark_files(cfg: PipelineConfig) -> list[str]:
    """The eval split and dev split the config evaluates on, and clean.extra_benchmarks."""
    test, dev = resolve_benchmark(cfg.eval)
    return [str(p) for p in (test, dev) if p is not None] + list(cfg.clean.extra_benchmarks)


def load_index(cfg: PipelineConfig) -> tuple[BenchmarkIndex, int]:
    """The n-gram index of every benchmark file, and its item count."""
    items: list[dict] = []
    for path in benchmark_files(cfg):
        found, _ = read_eval_items(Path(path), source_languages=cfg.eval.source_languages)
        items += found
    c = cfg.clean
    index = build_index(
        items, c.ngram_words, c.min_words, c.ngram_chars, c.min_chars, c.char_languages, c.fields
    )
    return index, len(items)


def dedup_settings(c: CleanConfig) -> DedupSettings:
    bands, rows = lsh_params(c.jaccard_threshold, c.num_perm)
    return DedupSettings(c.dedup, c.num_perm, c.shingle_chars, bands, rows, c.seed)


# Per worker process: the index of the run being cleaned, fetched from the object store
# by the first task of that run in this process and reused by the next ones.
_INDEX_CACHE: dict[str, Any] = {}


def _index_of(index_ref: list) -> BenchmarkIndex | None:
    import ray  # only here: the pure core stays importable without Ray

    if not index_ref:
        return None
    key = index_ref[0].hex()
    if _INDEX_CACHE.get("key") != key:
        _INDEX_CACHE.clear()  # another run's index: one is held at a time
        _INDEX_CACHE.update(key=key, index=ray.get(index_ref[0]))
    return _INDEX_CACHE["index"]


def _annotate(
    batch: pa.Table,
    index_ref: list,
    dedup: DedupSettings,
    remove: bool,
    work: str,
    partitions: int,
    block_rows: int,
    origin: dict[str, str | None],
) -> Iterator[pa.Table]:
    """A Ray Data map over file groups: each block of rows read (read_groups) is
    annotated and written as one work shard; yields the shards' names and row counts.
    The ref travels inside a list so that Ray does not resolve it per call."""
    index = _index_of(index_ref)
    for rows in read_groups(batch, block_rows, origin):
        annotated = annotate_batch(rows, index, dedup, remove)
        yield pa.Table.from_pylist([write_annotated(annotated, work, partitions)])


def _decide(batch: pa.Table, work: str) -> pa.Table:
    n = [decide_partition(work, p) for p in batch["partition"].to_pylist()]
    return pa.table({"duplicates": n})


def _attach(batch: pa.Table, work: str) -> pa.Table:
    n = [attach_signatures(work, s) for s in batch["shard"].to_pylist()]
    return pa.table({"candidates": n})


def _finish(batch: pa.Table, work: str, out: str, flag_only: bool, threshold: float) -> pa.Table:
    return pa.Table.from_pylist(
        [finish_shard(work, out, s, flag_only, threshold) for s in batch["shard"].to_pylist()]
    )


def _map_each(items: list[dict], fn, tasks: int, **kwargs: Any):
    """A Dataset mapping `fn` over `items` in at most `tasks` tasks (each item is still
    handled alone, one after the other: a task holds one shard or partition at a time).
    A few tasks per CPU, not one per shard: each task costs a scheduling round trip."""
    import ray  # the Ray layer

    blocks = max(1, min(len(items), tasks))
    return ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        fn, batch_size=None, batch_format="pyarrow", fn_kwargs=kwargs
    )


def _resolved(cfg: PipelineConfig, inputs: list[str], benchmarks: list[str]) -> dict[str, Any]:
    """What the output depends on (compared before a complete output is reused)."""
    settings = cfg.clean.model_dump(mode="json", exclude={"enabled", "output", "inputs"})
    for key in ("batch_rows", "task_input_mb", "partition_input_mb", "num_workers", "top_items"):
        settings.pop(key)
    return {"inputs": inputs, "origin": _origin(cfg), "benchmarks": benchmarks, "clean": settings}


def run_clean(cfg: PipelineConfig) -> dict[str, Any]:
    """Clean `clean_inputs(cfg)` into `<run>/clean/` (or clean.output); returns the
    summary (`output_dir`, `conversations_dir`, `skipped`, `total`, ...)."""
    import ray  # the Ray layer

    c = cfg.clean
    out = StageOutput.of(cfg.run, "clean", c.output)
    inputs, benchmarks = clean_inputs(cfg), benchmark_files(cfg)
    resolved = _resolved(cfg, inputs, benchmarks)
    done = out.summary()
    if done is not None:
        if done.get("resolved") != resolved:
            raise CleanError(f"{out} was cleaned with other settings: choose another run.name")
        log.info("%s is complete: skipping clean", out)
        return {**done, "skipped": True}
    out.clear()  # an incomplete earlier attempt: start again
    out.begin(dump_config(cfg))
    started = time.monotonic()
    index, n_items = load_index(cfg) if c.decontaminate else (None, 0)
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    workers = c.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    work = out.child(WORK)
    dedup = dedup_settings(c)

    files = list_conversation_files(inputs)
    groups = group_files(files, c.task_input_mb * 2**20)
    input_bytes = sum(Path(f).stat().st_size for f in files)
    # At least one partition per worker, so that the decide pass runs on every CPU.
    partitions = max(workers, math.ceil(input_bytes / (c.partition_input_mb * 2**20)))
    # Tasks, not actors, in every pass: the same pooled worker processes serve all four
    # passes (an actor pool's processes end with its pass, and new ones take seconds to
    # start); each process fetches the index from the object store once (_index_of).
    reads = ray.data.from_items([{"paths": g} for g in groups], override_num_blocks=len(groups))
    annotated = reads.map_batches(
        _annotate,
        batch_size=None,  # one file group per task (a batch size would bundle groups)
        batch_format="pyarrow",
        concurrency=workers,
        fn_kwargs={
            "index_ref": [ray.put(index)] if index is not None else [],
            "dedup": dedup,
            "remove": c.action == "remove",
            "work": work,
            "partitions": partitions,
            "block_rows": c.batch_rows,
            # The inputs are prepare's: rows named by neither file nor folder take its
            # --source/--language, as prepare itself reads them.
            "origin": _origin(cfg),
        },
    )
    shards = [r["shard"] for r in annotated.take_all()]
    pass_s: dict[str, float] = {}

    def lap(name: str) -> None:  # the seconds since the previous pass ended
        pass_s[name] = time.monotonic() - started - sum(pass_s.values())

    lap("annotate")
    by_shard = [{"shard": s} for s in shards]
    if c.dedup:
        _map_each(
            [{"partition": p} for p in range(partitions)], _decide, partitions, work=work
        ).materialize()
        lap("decide")
        _map_each(by_shard, _attach, _TASKS_PER_CPU * workers, work=work).materialize()
        lap("attach")
    flag_only, threshold = c.action == "flag", c.jaccard_threshold
    finish = _map_each(
        by_shard,
        _finish,
        _TASKS_PER_CPU * workers,
        work=work,
        out=out.uri,
        flag_only=flag_only,
        threshold=threshold,
    )
    finished = finish.take_all()
    lap("finish")
    table, items = merge_shard_results(finished)
    check_counts(table)
    settings = {
        **resolved,
        "benchmark_items": n_items,
        "benchmark_ngrams": index.n_grams if index is not None else 0,
        "gram_lengths": {"words": index.lengths.get(0, []), "chars": index.lengths.get(1, [])}
        if index is not None
        else {},
        "lsh": {"bands": dedup.bands, "rows": dedup.rows},
    }
    report = build_report(table, items, c.top_items, settings)
    out.write_json(report, "report.json")
    out.write_text(render_markdown(report), "report.md")
    storage.remove_tree(work)
    summary = {
        "output_dir": out.uri,
        "conversations_dir": out.child("conversations"),
        "rejects_dir": out.child("rejects"),
        "total": report["total"],
        "benchmark_items": n_items,
        "seconds": round(time.monotonic() - started, 2),
        "pass_seconds": {k: round(v, 2) for k, v in pass_s.items()},
        "resolved": resolved,
    }
    out.complete(summary)
    return {**summary, "skipped": False}


def cleaned_inputs(cfg: PipelineConfig) -> list[str]:
    """What prepare reads when clean.enabled: the conversations clean kept (clean runs
    first, or is skipped when complete), as a local directory: prepare reads local
    files, so kept conversations on an object store are copied to the user cache."""
    conversations = StageOutput(run_clean(cfg)["conversations_dir"])
    local = conversations.local_path()
    if local is None:
        digest = hashlib.sha256(conversations.uri.encode()).hexdigest()[:16]
        local = storage.cache_root() / "clean" / digest
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        storage.download_dir(conversations.uri, str(local))
    return [str(local)]
