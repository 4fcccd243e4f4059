"""`medbase <stage>`: the command line. Each command is a thin wrapper over a plain
Python function of its stage (`medbase_ray.<stage>.run_*`), so everything here is also
callable from Python.

    medbase doctor
    medbase prepare --preset tiny --set prepare.seq_len=1024
    medbase train -c my.yaml --set train.lr=2e-5
    medbase pipeline --preset tiny

`jobs/<stage>.py` (the `ray job submit` entrypoints) run this same app. Each stage's
runner is imported inside its command: runners pull ray, torch or openai, and
`medbase --help` must stay under a second.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from medbase_ray.config import PRESETS, ConfigError, PipelineConfig, dump_config, load_config
from medbase_ray.corpus.rejects import AllRejected, CorpusError
from medbase_ray.doctor import format_report, run_doctor
from medbase_ray.eval.prompts import EvalError
from medbase_ray.eval.report import render_markdown
from medbase_ray.models.checkpoint_info import SettingsConflict
from medbase_ray.prepare.manifest import FingerprintMismatch, summary_table

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
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        show_envvar=False,
        help="Ray cluster address (default: $RAY_ADDRESS, set inside a Ray job; else a local Ray).",
    ),
]

SourceOpt = Annotated[
    str | None,
    typer.Option("--source", help="Source of rows whose file and folder names give none."),
]
LanguageOpt = Annotated[
    str | None,
    typer.Option("--language", help="Language of rows whose file and folder names give none."),
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
    source: SourceOpt = None,
    language: LanguageOpt = None,
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
        "source": source,
        "language": language,
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
def clean(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="Conversation file or dir (repeatable; default: prepare.inputs, else the bundled corpus).",
        ),
    ] = None,
    flag_only: Annotated[
        bool,
        typer.Option("--flag-only", help="Keep contaminated records; list them in flagged/."),
    ] = False,
) -> None:
    """Check conversations against the benchmark (n-grams) and remove exact and near
    duplicates, on Ray Data; writes clean/conversations, rejects and report.md."""
    from medbase_ray.clean.pipeline import CleanError, run_clean

    overrides = list(set_ or [])
    overrides += [f"clean.inputs={json.dumps(input_)}"] if input_ else []
    overrides += ["clean.action=flag"] if flag_only else []
    cfg = _config(config, preset, overrides, address)
    try:
        summary = run_clean(cfg)
    except (CorpusError, CleanError, EvalError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    state = "already complete, skipped" if summary["skipped"] else "written"
    typer.echo(f"clean: {summary['output_dir']} ({state}); report: report.md there")
    typer.echo(json.dumps(summary["total"]))


@app.command()
def prepare(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    source: SourceOpt = None,
    language: LanguageOpt = None,
) -> None:
    """Render, tokenize, loss-mask and pack conversations into fixed-length rows."""
    from medbase_ray.prepare.pipeline import PrepareError, run_prepare

    origin = {"source": source, "language": language}
    origin_sets = [f"prepare.{k}={json.dumps(v)}" for k, v in origin.items() if v]
    cfg = _config(config, preset, list(set_ or []) + origin_sets, address)
    try:
        summary = run_prepare(cfg)
    except (CorpusError, PrepareError, AllRejected) as exc:
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
    data: Annotated[
        str | None,
        typer.Option("--data", help="Prepared directory to mix (default: <run>/prepared)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted sweep; finished trials are kept."),
    ] = False,
) -> None:
    """Optimise the language mixture with Ray Tune (docs/tune.md).

    Each trial trains on the prepared data mixed with its own language weights for
    tune.trial_max_steps steps, scoring the benchmark's dev split every tune.eval_steps;
    a regression over the trials proposes a mixture, trained as a final trial. Prints the
    ranked table; <run>/tune/ holds report.md, best_mixture.yaml and best_config.yaml
    (`medbase train -c <run>/tune/best_config.yaml --set run.name=best`).
    """
    from medbase_ray.train.run import TrainRunError
    from medbase_ray.tune.sweep import TuneRunError, run_tune

    cfg = _config(config, preset, set_, address)
    try:
        out = run_tune(cfg, resume=resume, data_dir=data)
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
    try:
        url = start_server(checkpoint, cfg, name=name, route_prefix=cfg.serve.route_prefix)
    except SettingsConflict as exc:  # the config contradicts the checkpoint's own settings
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
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
    from openai import OpenAIError  # heavy (its import alone takes a second)

    cfg = _config(config, preset, (set_ or []) + ([f"eval.mode={mode}"] if mode else []), address)
    try:
        if address:
            from medbase_ray.eval.remote import run_eval_on_ray

            report = run_eval_on_ray(cfg, base_url, checkpoint, out)
        else:
            from medbase_ray.eval.runner import run_eval

            report = run_eval(cfg, base_url, checkpoint, out)
    except (EvalError, CorpusError, SettingsConflict) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OpenAIError as exc:
        typer.echo(
            f"error from the endpoint: {exc} (finished items are kept; re-run to resume)", err=True
        )
        raise typer.Exit(1) from None
    typer.echo(render_markdown(report))
    typer.echo(f"outputs in {out or cfg.run.stage_dir('eval')}")


@app.command()
def demo(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Ray's and the stages' logs.")
    ] = False,
    wait: Annotated[
        bool | None,
        typer.Option(
            "--wait/--no-wait",
            help="Keep the endpoint up until Ctrl-C (default: when run in a terminal).",
        ),
    ] = None,
) -> None:
    """The whole pipeline on the embedded tiny model: rewrite, prepare, tune, train,
    serve, eval before/after, and <run>/report.html."""
    from medbase_ray.demo import run_demo

    cfg = _config(config, preset, set_, address)
    # The command as given (for the report), rebuilt from the options: sys.argv is not it
    # when the app runs in-process.
    argv = ["medbase", "demo", *(["-c", str(config)] if config else [])]
    argv += (["--preset", preset] if preset else []) + [a for s in set_ or [] for a in ("--set", s)]
    argv += ["--verbose"] if verbose else []
    argv += [] if wait is None else ["--wait" if wait else "--no-wait"]
    raise typer.Exit(run_demo(cfg, verbose=verbose, wait=wait, argv=argv))


class _StageInProgress:
    """run_pipeline's tracker for `medbase pipeline`: logs each stage (LogTracker) and
    remembers which one was running, to name it when the pipeline fails."""

    def __init__(self, log_tracker: Any) -> None:  # medbase_ray.pipeline.LogTracker
        self.log_tracker = log_tracker
        self.where = "before the first stage"

    @contextmanager
    def stage(self, name: str) -> Iterator[Any]:
        self.where = f"in stage {name}"
        with self.log_tracker.stage(name) as line:
            yield line
        self.where = f"after stage {name}"


@app.command()
def pipeline(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Every stage in order on one config, as `ray job submit` runs it (jobs/pipeline.py).

    Stage outputs go to <run.root>/<run.name>/; a stage whose output is complete is
    skipped, so re-running the same command resumes. A failure ends with the stage and
    the reason on the last line (exit 1).
    """
    from medbase_ray.pipeline import LogTracker, format_comparison, run_pipeline

    cfg = _config(config, preset, set_, address)
    tracker = _StageInProgress(LogTracker())
    try:
        out = run_pipeline(cfg, tracker)
    except Exception as exc:  # any stage's error: its traceback, then what and where
        traceback.print_exc()
        typer.echo("finished stages are kept: re-run the same command to resume", err=True)
        typer.echo(f"error: failed {tracker.where}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(format_comparison(out["before"], out["after"]))
    typer.echo(f"prepared:   {out['prepare']['output_dir']}")
    typer.echo(f"checkpoint: {out['train']['checkpoint']}")
    typer.echo(f"eval:       {cfg.run.stage_dir('eval')}")
    typer.echo(f"report:     {out['report']}")


@app.command()
def report(
    run_dir: Annotated[str, typer.Argument(help="A run directory (<root>/<name>) or its URI.")],
) -> None:
    """Write <run>/report.html for a run directory, whatever stages it holds."""
    from medbase_ray.report.build import write_report

    try:
        typer.echo(write_report(run_dir))
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


config_app = typer.Typer(help="Show the resolved config, or write its reference.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the resolved config (defaults, preset or file, overrides) as YAML."""
    typer.echo(dump_config(_config(config, preset, set_, None)), nl=False)


@config_app.command("docs")
def config_docs(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: print it).")
    ] = None,
) -> None:
    """Generate the config reference (docs/config.md) from the config classes.

    Every field with its meaning, its default and each preset's value.
    """
    from medbase_ray.report.config_docs import render_config_docs

    text = render_config_docs()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")


@app.command()
def doctor(
    address: AddressOpt = None,
    skip_ops: Annotated[
        bool, typer.Option("--skip-ops", help="Do not build DeepSpeed's CPU op.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report versions, CPUs/GPUs, whether DeepSpeed's CPU op builds, the Ray cluster
    and its token authentication."""
    report = run_doctor(address, build_ops=not skip_ops)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(format_report(report))


if __name__ == "__main__":
    app()
