"""`medbase <stage>`: the command line. Each command is a thin wrapper over a plain
Python function of its stage (`medbase_ray.<stage>.run_*`), so everything here is also
callable from Python.

    medbase doctor
    medbase prepare --preset tiny --set prepare.seq_len=1024
    medbase train -c my.yaml --set train.lr=2e-5
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from medbase_ray.config import PRESETS, ConfigError, PipelineConfig, load_config

app = typer.Typer(
    help="medbase-ray: the Apollo multilingual medical LLM pipeline on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Pipeline config YAML (default: the tiny preset)."),
]
PresetOpt = Annotated[
    str | None, typer.Option("--preset", help=f"A shipped preset: {', '.join(PRESETS)}.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field: --set train.lr=2e-5 (repeatable)."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster address (default: $RAY_ADDRESS, else local)."),
]


def _config(
    config: Path | None, preset: str | None, overrides: list[str] | None, address: str | None
) -> PipelineConfig:
    """Load and validate the config before any work; exit 2 with every problem named."""
    try:
        cfg = load_config(config, overrides or [], preset=preset)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if address:
        cfg.ray.address = address
    return cfg


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def rewrite(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the requests and ~tokens it would spend; send none."),
    ] = False,
    input_: Annotated[
        str | None,
        typer.Option(
            "--input", help="Raw text: ApolloCorpus dir, *_text.json, JSONL or Parquet file."
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Teacher: any OpenAI-compatible /v1 URL.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Teacher model name.")] = None,
    task: Annotated[
        list[str] | None,
        typer.Option("--task", help="qa, dialogue or translate (repeatable)."),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="translate: target language code (repeatable)."),
    ] = None,
) -> None:
    """Back-translate raw medical text into QA pairs and dialogues through a teacher LLM.

    The API key is read from the environment variable rewrite.api_key_env
    (OPENAI_API_KEY by default). Re-running resumes: finished items are skipped.
    """
    options = {
        "input": input_,
        "base_url": base_url,
        "model": model,
        "tasks": task,
        "target_languages": target,
    }
    overrides = list(set_ or []) + [
        f"rewrite.{key}={json.dumps(value)}" for key, value in options.items() if value
    ]
    cfg = _config(config, preset, overrides, address)
    from medbase_ray.rewrite.pipeline import run_rewrite
    from medbase_ray.rewrite.teacher import TeacherUnusable

    try:
        summary = run_rewrite(cfg, dry_run=dry_run)
    except ValueError as exc:  # bad input or prompt set, named before any request
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except TeacherUnusable as exc:  # wrong URL, model or key: finished work is kept
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))


@app.command()
def prepare(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Render, tokenize, loss-mask and pack conversations into fixed-length rows."""
    from medbase_ray.corpus.rejects import CorpusError
    from medbase_ray.prepare.manifest import summary_table
    from medbase_ray.prepare.pipeline import PrepareError, run_prepare

    cfg = _config(config, preset, set_, address)
    try:
        summary = run_prepare(cfg)
    except (CorpusError, PrepareError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    state = "already complete, skipped" if summary["skipped"] else "written"
    typer.echo(f"prepared: {summary['output_dir']} ({state})")
    typer.echo(summary_table(summary["manifest"]))


@app.command()
def train(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="Prepared directory to train on (default: <run>/prepared)."),
    ] = None,
    dev_data: Annotated[
        str | None,
        typer.Option("--dev-data", help="Prepared directory for the dev loss (eval_steps)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run from its latest checkpoint, exactly."),
    ] = False,
) -> None:
    """Supervised fine-tuning with DeepSpeed ZeRO on Ray Train.

    Prints the final checkpoint: a Hugging Face model directory that `medbase serve`
    and `medbase eval` load as it is.
    """
    from medbase_ray.prepare.manifest import FingerprintMismatch
    from medbase_ray.train.data import load_dev_data
    from medbase_ray.train.run import TrainRunError, run_train

    cfg = _config(config, preset, set_, address)
    try:
        dev = load_dev_data(cfg, dev_data) if dev_data else None
        out = run_train(cfg, dev_dataset=dev, resume=resume, data_dir=data)
    except (TrainRunError, FingerprintMismatch, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    final = out.get("final") or {}
    shown = ", ".join(f"{k} {final[k]:.4g}" for k in ("loss", "dev_loss") if k in final)
    typer.echo(f"trained {out['steps']} steps ({shown}); run dir {out['run_dir']}")
    typer.echo(out["checkpoint"])


@app.command()
def tune(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Sweep the language mixing ratios with Ray Tune.

    Each trial trains on the prepared data mixed with its own language weights for
    tune.trial_max_steps steps and scores the benchmark's dev split. Prints the ranked
    table; <run>/tune/best_config.yaml is the config with the best mixture
    (`medbase train -c <run>/tune/best_config.yaml --set run.name=best`).
    """
    from medbase_ray.prepare.manifest import FingerprintMismatch
    from medbase_ray.train.run import TrainRunError
    from medbase_ray.tune.sweep import TuneRunError, run_tune

    cfg = _config(config, preset, set_, address)
    try:
        out = run_tune(cfg)
    except (TuneRunError, TrainRunError, FingerprintMismatch, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(out["table"])
    best = ", ".join(f"{lang} {share:.2f}" for lang, share in out["best"]["shares"].items())
    typer.echo(f"best mixture ({out['metric']}): {best}; written to {out['tune_dir']}")


@app.command()
def serve(
    checkpoint: Annotated[
        str, typer.Argument(help='"tiny" (the embedded model) or a Hugging Face model directory.')
    ] = "tiny",
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Serve a checkpoint behind an OpenAI-compatible API on Ray Serve (Ctrl-C to stop).

    Prints the base URL for OpenAI clients; with $MEDBASE_API_KEY set, requests need
    `Authorization: Bearer <key>`.
    """
    cfg = _config(config, preset, set_, address)
    if checkpoint != "tiny" and not Path(checkpoint).is_dir():
        typer.echo(f"error: checkpoint {checkpoint} is not a directory (or 'tiny')", err=True)
        raise typer.Exit(2)
    from medbase_ray.serve.app import start_server, wait_until_interrupted

    name = "medbase"
    url = start_server(checkpoint, cfg, name=name, route_prefix=cfg.serve.route_prefix)
    typer.echo(url)
    wait_until_interrupted(name)


@app.command(name="eval")
def eval_(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            help="Model directory to run in-process (default: model.name_or_path); "
            "with --base-url, the tokenizer to measure prompts with.",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="generate, loglikelihood or cloze (default: eval.mode)."),
    ] = None,
    out: Annotated[
        str | None, typer.Option("--out", help="Output directory (default: <run>/eval).")
    ] = None,
) -> None:
    """Run the multilingual medical benchmark against an endpoint or a checkpoint.

    Writes results.jsonl (resumable), report.json, report.md and wrong_items.jsonl.
    With --address the checkpoint runs in a Ray actor on that cluster.
    """
    from openai import OpenAIError

    from medbase_ray.corpus.rejects import CorpusError
    from medbase_ray.eval.prompts import EvalError

    cfg = _config(config, preset, (set_ or []) + ([f"eval.mode={mode}"] if mode else []), address)
    try:
        if address:
            from medbase_ray.eval.remote import run_eval_on_ray

            report = run_eval_on_ray(cfg, base_url, checkpoint, out)
        else:
            from medbase_ray.eval.runner import run_eval

            report = run_eval(cfg, base_url, checkpoint, out)
    except (EvalError, CorpusError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OpenAIError as exc:
        typer.echo(
            f"error from the endpoint: {exc} (finished items are kept; re-run to resume)", err=True
        )
        raise typer.Exit(1) from None
    from medbase_ray.eval.report import render_markdown

    typer.echo(render_markdown(report))
    typer.echo(f"outputs in {out or cfg.run.stage_dir('eval')}")


@app.command()
def demo(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Run every stage that exists, end to end, on the embedded tiny model."""
    from medbase_ray.demo import run_demo

    cfg = _config(config, preset, set_, address)
    raise typer.Exit(run_demo(cfg))


@app.command()
def doctor(
    address: AddressOpt = None,
    skip_ops: Annotated[
        bool, typer.Option("--skip-ops", help="Do not build DeepSpeed's CPU op.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report versions, CPUs/GPUs, whether DeepSpeed's CPU op builds, and Ray reachability."""
    from medbase_ray.doctor import run_doctor

    report = run_doctor(address, build_ops=not skip_ops)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"python        {report['python']}")
    for name, version in report["packages"].items():
        typer.echo(f"{name:<13} {version}")
    d = report["devices"]
    typer.echo(f"cpus          {d['cpus']}")
    typer.echo(f"cuda gpus     {d['cuda_gpus']} {', '.join(d.get('gpu_names', []))}".rstrip())
    for key, label in (("deepspeed_cpu_op", "deepspeed op"), ("ray_cluster", "ray cluster")):
        item = report[key]
        mark = {True: "ok", False: "FAIL", None: "-"}[item["ok"]]
        typer.echo(f"{label:<13} {mark}: {item['detail']}")


if __name__ == "__main__":
    app()
