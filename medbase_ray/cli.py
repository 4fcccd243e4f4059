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

from medbase_ray.config import ConfigError, PipelineConfig, load_config

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
    str | None, typer.Option("--preset", help="A shipped preset: tiny, qwen2.5-0.5b, cluster-7b.")
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


def _not_yet(stage: str) -> None:
    typer.echo(
        f"medbase {stage}: this stage is not implemented yet (see the open issues).", err=True
    )
    raise typer.Exit(3)


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
) -> None:
    """Back-translate raw medical text into QA pairs and dialogues through a teacher LLM."""
    _config(config, preset, set_, address)
    _not_yet("rewrite")


@app.command()
def prepare(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Render, tokenize, loss-mask and pack conversations into fixed-length rows."""
    _config(config, preset, set_, address)
    _not_yet("prepare")


@app.command()
def train(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Supervised fine-tuning with DeepSpeed ZeRO on Ray Train."""
    _config(config, preset, set_, address)
    _not_yet("train")


@app.command()
def tune(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Sweep the language mixing ratios with Ray Tune."""
    _config(config, preset, set_, address)
    _not_yet("tune")


@app.command()
def serve(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Serve a checkpoint behind an OpenAI-compatible API on Ray Serve."""
    _config(config, preset, set_, address)
    _not_yet("serve")


@app.command(name="eval")
def eval_(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    address: AddressOpt = None,
) -> None:
    """Run the multilingual medical benchmark against an endpoint or a checkpoint."""
    _config(config, preset, set_, address)
    _not_yet("eval")


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
