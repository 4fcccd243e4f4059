"""`medbase demo`: the pipeline end to end on the embedded tiny model and bundled data.

Prepares the bundled SFT conversations, trains the tiny model on them with DeepSpeed on
Ray Train, serves the untrained and the trained model on Ray Serve, runs the bundled
benchmark against both endpoints, and prints the accuracy per language before and after.
"""

from __future__ import annotations

import time

import typer

from medbase_ray.config import PipelineConfig


def run_demo(cfg: PipelineConfig) -> int:
    """Run the pipeline on the bundled sample; returns the process exit code."""
    from medbase_ray.corpus.readers import (
        read_conversations,
        read_eval_items,
        read_raw_texts,
        sample_dir,
    )
    from medbase_ray.models.loading import resolve_model_path
    from medbase_ray.pipeline import format_comparison, run_pipeline

    start = time.monotonic()
    typer.echo(f"== model: {resolve_model_path(cfg.model.name_or_path)}")
    data = sample_dir()
    _, text_counts = read_raw_texts(data / "apollo")
    _, conv_counts = read_conversations(data / "apollo")
    _, bench_counts = read_eval_items(data / "xmedbench" / "test.json")
    typer.echo(
        f"== corpus: {text_counts.kept} passages, {conv_counts.kept} conversations, "
        f"{bench_counts.kept} benchmark test items (6 languages)"
    )
    result = run_pipeline(cfg)
    manifest = result["prepare"].get("manifest", {})
    typer.echo(f"== prepare: {result['prepare'].get('output_dir', cfg.run.stage_dir('prepared'))}")
    totals = manifest.get("totals") or {}
    if totals:
        typer.echo(f"   {totals}")
    train = result["train"]
    final = train.get("final") or {}
    typer.echo(
        f"== train: {train.get('steps')} steps, final loss {final.get('loss', float('nan')):.3f}; "
        f"checkpoint {train['checkpoint']}"
    )
    mode = cfg.eval.mode
    typer.echo(
        f"== eval ({mode}, {cfg.eval.k_shot}-shot) through Ray Serve, before vs after training:"
    )
    typer.echo(format_comparison(result["before"], result["after"]))
    typer.echo(f"== reports: {cfg.run.stage_dir('eval')}/{{untrained,trained}}/report.md")
    typer.echo(f"== done in {time.monotonic() - start:.0f} s")
    return 0
