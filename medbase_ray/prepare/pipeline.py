"""The Ray layer of the prepare stage: `run_prepare` and `resolve_mixture`.

    groups of files --map_batches(read_file_groups)--> conversations
        --map_batches(tokenize_in_batches)--> samples --map_batches(pack_table)-->
        packed rows --write_datasink(PreparedDatasink)--> shards + rejects per task

Every map takes whole blocks (batch_size=None), so Ray fuses them with the write into
one task per group of files: a worker holds one group at a time, and the driver only
sees counts (memory does not grow with the corpus). The driver then writes
manifest.json and, last, _SUCCESS. (A batch size on a fused map would make Ray bundle
that many *groups* into one task; the tokenizer batches and packing windows are cut
inside the functions instead.)

    from medbase_ray.config import load_config
    from medbase_ray.prepare.pipeline import run_prepare
    summary = run_prepare(load_config(preset="tiny"))
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
from ray.data import Datasink
from ray.data.block import BlockAccessor

from medbase_ray.config import PipelineConfig, dump_config
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
    PrepareError,
    build_manifest,
    complete_manifest,
    fingerprint,
    merge_task_results,
    pad_id_of,
    read_manifest,
    write_manifest,
)
from medbase_ray.prepare.mixture import load_sources, plan_mixture, read_unit
from medbase_ray.prepare.output import write_packed_blocks
from medbase_ray.prepare.stream import pack_table, tokenize_in_batches
from medbase_ray.prepare.tokenization import tokenizer_from_spec, worker_tokenizer_spec

log = logging.getLogger(__name__)
MAX_PLAN_BLOCKS = 256  # blocks of the mixture's read units (each read unit by unit)

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
    if cfg.prepare.inputs:
        return list(cfg.prepare.inputs)
    from medbase_ray.corpus.readers import sample_dir

    return [str(sample_dir() / "apollo")]


def _conversations(inputs: list[str], task_input_mb: int):
    """A Ray Dataset of conversation stream rows from files and `hf:` datasets."""
    import ray

    files = list_conversation_files(i for i in inputs if not i.startswith(HF_PREFIX))
    parts = []
    if files:
        groups = group_files(files, task_input_mb * 2**20)
        items = [{"paths": g} for g in groups]
        parts.append(
            ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                read_file_groups, batch_size=1, batch_format="pyarrow"
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


def run_prepare(cfg: PipelineConfig) -> dict[str, Any]:
    """Prepare `cfg.prepare.inputs` into `cfg.run.stage_dir("prepared")`.

    Returns {"output_dir", "skipped", "manifest"}. A complete output made with the same
    config is reused; one made with another config is an error (choose another
    run.name); an incomplete one is removed and made again.
    """
    from medbase_ray import storage
    from medbase_ray.models.checkpoint_info import resolve_model_settings
    from medbase_ray.models.loading import resolve_model_path
    from medbase_ray.ray_runtime import init_ray

    p, m, out = cfg.prepare, cfg.model, cfg.run.stage_dir("prepared")
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
        return {"output_dir": out, "skipped": True, "manifest": done}
    storage.remove_tree(out)  # an incomplete earlier attempt: start again

    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    spec = worker_tokenizer_spec(tokenizer, tokenizer_path, m.trust_remote_code, chat_format)
    tokenize_args = {"tokenizer": spec, "batch_size": p.batch_size, "chat_format": chat_format}
    tokenize_args |= {"seq_len": p.seq_len, "overlong": p.overlong}
    pack_args = {"seq_len": p.seq_len, "packing": p.packing, "window": p.pack_window}
    pack_args["pad_id"] = pad_id_of(tokenizer)
    ds = (
        _conversations(inputs, p.task_input_mb)
        .map_batches(
            tokenize_in_batches, batch_size=None, batch_format="pyarrow", fn_kwargs=tokenize_args
        )
        .map_batches(pack_table, batch_size=None, batch_format="pyarrow", fn_kwargs=pack_args)
    )
    sink = PreparedDatasink(out, p.rows_per_shard, p.row_group_rows)
    ds.write_datasink(sink)

    counts, shards, reject_files = merge_task_results(sink.results)
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
    )
    write_manifest(out, manifest, dump_config(cfg))
    manifest["path"] = out
    return {"output_dir": out, "skipped": False, "manifest": manifest}


def _read_units(batch: pa.Table, prepared_dir: str) -> pa.Table:
    units = batch.to_pylist()
    return pa.concat_tables(
        [read_unit(prepared_dir, u["shards"], u["rows"], u["seed"]) for u in units]
    )


def resolve_mixture(prepared_dir: str, spec: MixtureSpec) -> tuple[Any, dict[str, Any]]:
    """A Ray Dataset of the mixture's packed rows (PACKED_ROW_SCHEMA), in the plan's
    order (preserve_order is set on it), and the report of realised token shares."""
    import ray

    from medbase_ray.ray_runtime import init_ray

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
