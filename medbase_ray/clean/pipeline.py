"""The Ray layer of the clean stage: `run_clean`.

    files --map_batches(read_groups)--> conversation rows
          --map_batches(Annotator: index from the object store)--> work/records, work/keys
    key partitions --map_batches(decide_partition)--> work/dups (exact), work/cand
    shards --map_batches(attach_signatures)--> work/dups (near-dup candidates)
    shards --map_batches(finish_shard)--> conversations/, rejects/, flagged/
    driver: report.json, report.md, summary.json, _SUCCESS (last)

The benchmark index is built once on the driver and put in the object store; each
Annotator actor fetches it once. The driver only sees shard names and counts, and each
task holds one batch, one shard or one key partition: memory does not grow with the
corpus (the work files do, on disk). An incomplete earlier output is removed and made
again; a complete one is reused when made with the same settings.

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


class Annotator:
    """A Ray Data actor: the index fetched once from the object store, then per batch
    the matches and dedup keys, written as one work shard; returns the shard's name."""

    def __init__(
        self, index_ref: list, dedup: DedupSettings, remove: bool, work: str, partitions: int
    ) -> None:
        import ray  # only here: the pure core stays importable without Ray

        # The ref travels inside a list so that Ray does not resolve it per call.
        self.index = ray.get(index_ref[0]) if index_ref else None
        self.dedup, self.remove, self.work, self.partitions = dedup, remove, work, partitions

    def __call__(self, rows: pa.Table) -> pa.Table:
        annotated = annotate_batch(rows, self.index, self.dedup, self.remove)
        result = write_annotated(annotated, self.work, self.partitions)
        return pa.Table.from_pylist([result])


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


def _map_each(items: list[dict], fn, **kwargs: Any):
    """A Dataset mapping `fn` over `items`, one item per task."""
    import ray  # the Ray layer

    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        fn, batch_size=1, batch_format="pyarrow", fn_kwargs=kwargs
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
    reads = ray.data.from_items([{"paths": g} for g in groups], override_num_blocks=len(groups))
    annotated = reads.map_batches(
        read_groups,
        batch_size=1,
        batch_format="pyarrow",
        # The inputs are prepare's: rows named by neither file nor folder take its
        # --source/--language, as prepare itself reads them.
        fn_kwargs={"block_rows": c.batch_rows, "origin": _origin(cfg)},
    ).map_batches(
        Annotator,
        # Whole blocks (read_groups cuts them at batch_rows): a batch size here would make
        # Ray bundle that many file *groups* into one task of the fused read + annotate.
        batch_size=None,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
        fn_constructor_kwargs={
            "index_ref": [ray.put(index)] if index is not None else [],
            "dedup": dedup,
            "remove": c.action == "remove",
            "work": work,
            "partitions": partitions,
        },
    )
    shards = [r["shard"] for r in annotated.take_all()]
    pass_s = {"annotate": time.monotonic() - started}
    by_shard = [{"shard": s} for s in shards]
    if c.dedup:
        _map_each([{"partition": p} for p in range(partitions)], _decide, work=work).materialize()
        pass_s["decide"] = time.monotonic() - started - sum(pass_s.values())
        _map_each(by_shard, _attach, work=work).materialize()
        pass_s["attach"] = time.monotonic() - started - sum(pass_s.values())
    flag_only, threshold = c.action == "flag", c.jaccard_threshold
    finish = _map_each(
        by_shard, _finish, work=work, out=out.uri, flag_only=flag_only, threshold=threshold
    )
    finished = finish.take_all()
    pass_s["finish"] = time.monotonic() - started - sum(pass_s.values())
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
