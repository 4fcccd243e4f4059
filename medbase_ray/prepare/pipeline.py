"""The Ray layer of the prepare stage: `run_prepare` and `resolve_mixture`.

    groups of files --map_batches(read_file_groups)--> conversations
        --map_batches(tokenize_in_batches)--> samples --map_batches(pack_table)-->
        packed rows --write_datasink(PreparedDatasink)--> shards + rejects per task

The read is a task per group of files that streams its files (ijson, never a whole
file) and yields a block every prepare.task_input_mb of text; it asks for no CPU, so
Ray does not fuse it with the tokenizer (fused ops need equal resources) and the
blocks of one big file are tokenized, packed and written by as many tasks as there are
CPUs (issue 18). The later maps take whole blocks (batch_size=None) and are fused with
the write: a worker holds one block at a time, and the driver only sees counts (memory
does not grow with the corpus or with a file). The driver then writes manifest.json
and the summary, and StageOutput writes _SUCCESS last.

    from medbase_ray.config import load_config
    from medbase_ray.prepare.pipeline import run_prepare
    summary = run_prepare(load_config(preset="tiny"))
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import ray
from ray.data import Datasink
from ray.data.block import BlockAccessor

from medbase_ray.clean.pipeline import cleaned_inputs
from medbase_ray.config import PipelineConfig, dump_config
from medbase_ray.corpus.readers import sample_dir
from medbase_ray.prepare.config import MixtureSpec
from medbase_ray.prepare.inputs import (
    HF_PREFIX,
    check_conversation_rows,
    group_files,
    list_conversation_files,
    load_hf_dataset,
    read_file_groups,
)
from medbase_ray.prepare.manifest import (
    MANIFEST_FILE,
    PrepareError,
    build_manifest,
    check_not_all_rejected,
    complete_manifest,
    fingerprint,
    merge_task_results,
    pad_id_of,
    prepare_summary,
    read_manifest,
)
from medbase_ray.prepare.mixture import load_sources, plan_mixture, read_unit
from medbase_ray.prepare.output import write_packed_blocks
from medbase_ray.prepare.stream import pack_table, tokenize_in_batches
from medbase_ray.prepare.tokenization import tokenizer_from_spec, worker_tokenizer_spec
from medbase_ray.ray_runtime import init_ray
from medbase_ray.stage import StageOutput

log = logging.getLogger(__name__)
MAX_PLAN_BLOCKS = 256  # blocks of the mixture's read units (each read unit by unit)
READ_CONCURRENCY = 4  # file-group readers at once: parsing is cheap beside tokenizing

__all__ = ["PrepareError", "PreparedDatasink", "resolve_mixture", "run_prepare"]


class PreparedDatasink(Datasink[dict]):
    """Writes each task's packed rows as Parquet shards per source, and its rejects."""

    def __init__(self, out_dir: str, rows_per_shard: int, row_group_rows: int) -> None:
        self.out_dir = out_dir
        self.rows_per_shard = rows_per_shard
        self.row_group_rows = row_group_rows
        self.results: list[dict] = []

    def write(self, blocks, ctx) -> dict:
        tables = (BlockAccessor.for_block(b).to_arrow() for b in blocks)
        return write_packed_blocks(
            tables, self.out_dir, ctx.task_idx, self.rows_per_shard, self.row_group_rows
        )

    def on_write_complete(self, write_result) -> None:
        self.results = list(write_result.write_returns)


def _inputs(cfg: PipelineConfig) -> list[str]:
    if cfg.clean.enabled:  # issue 14: prepare reads what the clean stage kept
        return cleaned_inputs(cfg)
    if cfg.prepare.inputs:
        return list(cfg.prepare.inputs)
    return [str(sample_dir() / "apollo")]


def _conversations(cfg: PipelineConfig, inputs: list[str]):
    """A Ray Dataset of conversation stream rows from files and `hf:` datasets."""
    p = cfg.prepare
    files = list_conversation_files(i for i in inputs if not i.startswith(HF_PREFIX))
    parts = []
    if files:
        groups = group_files(files, p.task_input_mb * 2**20)
        items = [{"paths": g} for g in groups]
        read_args = {"block_chars": p.task_input_mb * 2**20, "source": p.source}
        read_args["language"] = p.language
        parts.append(
            ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                read_file_groups,
                batch_size=1,
                batch_format="pyarrow",
                fn_kwargs=read_args,
                # No CPU asked: not fused with the 1-CPU tokenizer, so a big file's
                # blocks spread over the workers; a few readers at a time (backpressure).
                num_cpus=0,
                concurrency=min(READ_CONCURRENCY, len(items)),
            )
        )
    for spec in (i for i in inputs if i.startswith(HF_PREFIX)):
        parts.append(
            ray.data.from_huggingface(load_hf_dataset(spec)).map_batches(
                lambda b, origin=spec: check_conversation_rows(b.to_pylist(), origin),
                batch_format="pyarrow",
            )
        )
    if not parts:
        raise PrepareError(f"no conversation inputs in {inputs}")
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


@contextmanager
def _max_block_bytes(max_bytes: int) -> Iterator[None]:
    """Ray Data's block size for the datasets made inside: the reader's yields of
    prepare.task_input_mb stay blocks of their own (by default Ray merges a task's
    yields into blocks of up to 128 MiB, and one big file would again be one task)."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.target_max_block_size
    ctx.target_max_block_size = max_bytes
    try:
        yield
    finally:
        ctx.target_max_block_size = saved


def run_prepare(cfg: PipelineConfig) -> dict[str, Any]:
    """Prepare `cfg.prepare.inputs` into `cfg.run.stage_dir("prepared")`.

    Returns {"output_dir", "skipped", "manifest", "summary"}. A complete output made
    with the same config is reused; one made with another config is an error (choose
    another run.name); an incomplete one is removed and made again. AllRejected when
    every input row was rejected.
    """
    # transformers (tokenizer loading): imported when prepare runs, not with the module
    from medbase_ray.models.checkpoint_info import resolve_model_settings
    from medbase_ray.models.loading import resolve_model_path

    p, m, out = cfg.prepare, cfg.model, StageOutput.of(cfg.run, "prepared")
    chat_format = resolve_model_settings(m).chat_format
    inputs = _inputs(cfg)
    tokenizer_path = resolve_model_path(m.name_or_path)
    tokenizer = tokenizer_from_spec(
        {"path": tokenizer_path, "trust_remote_code": m.trust_remote_code}
    )
    # What the output depends on, compared before a complete output is reused.
    resolved = {
        "model": m.name_or_path,
        "chat_format": chat_format,
        "inputs": inputs,
        "prepare": p.model_dump(mode="json", exclude={"inputs"}),
    }
    done = complete_manifest(out, resolved, fingerprint(tokenizer, chat_format, p.seq_len))
    if done is not None:
        log.info("%s is complete: skipping prepare", out)
        summary = prepare_summary(out, done)
        check_not_all_rejected(summary)
        return {"output_dir": out.uri, "skipped": True, "manifest": done, "summary": summary}
    out.clear()  # an incomplete earlier attempt: start again (shards are named by task)
    out.begin(dump_config(cfg))

    results = _write_packed_rows(cfg, inputs, tokenizer, tokenizer_path, chat_format, out.uri)
    counts, shards, reject_files, reasons = merge_task_results(results)
    manifest = build_manifest(
        counts,
        shards,
        seq_len=p.seq_len,
        tokenizer=tokenizer,
        tokenizer_name=m.name_or_path,
        chat_format=chat_format,
        packing=p.packing,
        config=resolved,
        reject_files=reject_files,
        reasons=reasons,
    )
    out.write_json(manifest, MANIFEST_FILE)
    summary = prepare_summary(out, manifest)
    out.complete(summary)
    manifest["path"] = out.uri
    check_not_all_rejected(summary)
    return {"output_dir": out.uri, "skipped": False, "manifest": manifest, "summary": summary}


def _write_packed_rows(
    cfg: PipelineConfig, inputs: list[str], tokenizer, tokenizer_path, chat_format, out: str
) -> list[dict]:
    """The Ray part: read -> tokenize -> pack -> write under `out`; the write tasks'
    results (shards, counts, reject files, reasons)."""
    p, m = cfg.prepare, cfg.model
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    spec = worker_tokenizer_spec(tokenizer, tokenizer_path, m.trust_remote_code, chat_format)
    tokenize_args = {"tokenizer": spec, "batch_size": p.batch_size, "chat_format": chat_format}
    tokenize_args |= {"seq_len": p.seq_len, "overlong": p.overlong}
    pack_args = {"seq_len": p.seq_len, "packing": p.packing, "window": p.pack_window}
    pack_args["pad_id"] = pad_id_of(tokenizer)
    sink = PreparedDatasink(out, p.rows_per_shard, p.row_group_rows)
    with _max_block_bytes(p.task_input_mb * 2**20):
        ds = (
            _conversations(cfg, inputs)
            .map_batches(
                tokenize_in_batches,
                batch_size=None,
                batch_format="pyarrow",
                fn_kwargs=tokenize_args,
            )
            .map_batches(pack_table, batch_size=None, batch_format="pyarrow", fn_kwargs=pack_args)
        )
        ds.write_datasink(sink)
    return sink.results


def _read_units(batch: pa.Table, prepared_dir: str) -> pa.Table:
    units = batch.to_pylist()
    return pa.concat_tables(
        [read_unit(prepared_dir, u["shards"], u["rows"], u["seed"]) for u in units]
    )


def resolve_mixture(prepared_dir: str, spec: MixtureSpec) -> tuple[Any, dict[str, Any]]:
    """A Ray Dataset of the mixture's packed rows (PACKED_ROW_SCHEMA), in the plan's
    order (preserve_order is set on it), and the report of realised token shares."""
    manifest = read_manifest(prepared_dir)
    plan = plan_mixture(load_sources(prepared_dir, manifest), spec)
    if not plan.chunks:
        raise ValueError(f"the mixture selects no rows of {prepared_dir}")
    init_ray()
    items = plan.units()
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_PLAN_BLOCKS))
    ds = ds.map_batches(
        _read_units, batch_size=1, batch_format="pyarrow", fn_kwargs={"prepared_dir": prepared_dir}
    )
    # The order is part of the mixture (seeded; Apollo's priority puts sources early).
    ds.context.execution_options.preserve_order = True
    report = {
        **plan.report,
        "prepared_dir": prepared_dir,
        "fingerprint": manifest["fingerprint"],
        "seq_len": manifest["seq_len"],
        "spec": spec.model_dump(mode="json"),
    }
    return ds, report
