"""`medbase demo`: every stage that exists, end to end, on the embedded tiny model."""

from __future__ import annotations

import typer

from medbase_ray.config import PipelineConfig


def run_demo(cfg: PipelineConfig) -> int:
    """Run the pipeline on the bundled sample; returns the process exit code."""
    from medbase_ray.corpus import read_conversations, read_eval_items, read_raw_texts, sample_dir
    from medbase_ray.models import resolve_model_path

    typer.echo("== model: building / loading the embedded tiny model")
    typer.echo(f"   {resolve_model_path(cfg.model.name_or_path)}")
    data = sample_dir()
    _, text_counts = read_raw_texts(data / "apollo")
    _, conv_counts = read_conversations(data / "apollo")
    _, bench_counts = read_eval_items(data / "xmedbench" / "test.json")
    typer.echo(
        f"== corpus: {text_counts.kept} passages, {conv_counts.kept} conversations, "
        f"{bench_counts.kept} benchmark items"
    )
    return 0
