"""`medbase demo`: the whole pipeline on the embedded tiny model and the bundled data.

    medbase demo                    # progress lines; the endpoint stays up until Ctrl-C
    medbase demo --no-wait          # exit after the report (tests, scripts)
    medbase demo --verbose          # Ray's own logs (workers, Tune tables, Serve access logs)

Runs medbase_ray.pipeline.run_pipeline (rewrite -> eval before -> prepare -> tune -> train
-> serve -> eval after -> report) with one progress line per stage. Without --verbose,
everything Ray and the stages print goes to `<run>/demo.log` instead of the terminal (the
last lines are shown if a stage fails). Ends with the report's path and the endpoint's
URL, with a `curl` and an `openai` call that work as printed.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from medbase_ray import storage
from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.readers import read_raw_texts, sample_dir
from medbase_ray.corpus.writers import write_jsonl
from medbase_ray.pipeline import TRAINED_APP, format_comparison, run_pipeline
from medbase_ray.ray_runtime import init_ray
from medbase_ray.report.build import write_report
from medbase_ray.serve.app import derive_model_id, wait_until_interrupted

# The demo's own settings, used where the config file, preset or --set gives none:
# short teacher answers (the untrained tiny model writes noise, so long ones only cost
# time) and a sweep of two mixtures, a few steps each (a ranking on the dev split, not a
# training): the mixture in proportion to the prepared tokens (the preset's own) against
# a tempered one (p ~ tokens^0.5, as mT5 / XLM-R sample languages), side by side with one
# worker each (the same global batch); no proposal trial.
DEMO_DEFAULTS: dict[str, dict[str, Any]] = {
    "rewrite": {"max_tokens": 64},
    "tune": {
        "baselines": ["natural", "temperature"],
        "temperature_alpha": 0.5,
        "num_samples": 2,
        "trial_max_steps": 10,
        "trial_num_workers": 1,
        "max_concurrent_trials": 2,
        "propose": False,
    },
}
# Passages per language the demo's rewrite sends to the teacher (of 33 bundled): the
# untrained tiny model answers at about one passage a second on 2 CPUs, so the demo
# shows the stage on a sample; `--set rewrite.input=...` rewrites any file in full.
REWRITE_PASSAGES_PER_LANGUAGE = 4
LOG_TAIL_LINES = 25
QUESTION = "What is the first-line treatment of hypertension?"


def apply_demo_defaults(cfg: PipelineConfig) -> PipelineConfig:
    """DEMO_DEFAULTS on the fields the config and overrides left unset (validated as a
    whole section: the tune fields depend on each other)."""
    for section, fields in DEMO_DEFAULTS.items():
        part = getattr(cfg, section)
        unset = {k: v for k, v in fields.items() if k not in part.model_fields_set}
        data = part.model_dump(exclude_unset=True) | unset  # unset fields stay unset
        setattr(cfg, section, type(part).model_validate(data))
    return cfg


def write_rewrite_sample(per_language: int) -> Path:
    """The first `per_language` bundled passages of each language, as a JSONL file of
    raw-text records in the user cache (the run root may be a URI; rewrite reads local
    files)."""
    records, _ = read_raw_texts(sample_dir() / "apollo")
    taken: dict[str, int] = {}
    sample = []
    for record in records:
        if taken.get(record["language"], 0) < per_language:
            taken[record["language"]] = taken.get(record["language"], 0) + 1
            sample.append(record)
    path = storage.cache_root() / "demo" / f"rewrite_sample_{per_language}.jsonl"
    fresh = path.with_suffix(".new")
    write_jsonl(fresh, sample)
    # Replaced only when it differs: rewrite keys a finished output to its input file's
    # size and time, and a re-run of the demo should skip the stage.
    if path.exists() and filecmp.cmp(fresh, path, shallow=False):
        fresh.unlink()
    else:
        fresh.replace(path)
    return path


def apply_rewrite_sample(cfg: PipelineConfig) -> None:
    """The demo rewrites REWRITE_PASSAGES_PER_LANGUAGE passages per language unless an
    input is configured."""
    if "input" not in cfg.rewrite.model_fields_set:
        cfg.rewrite.input = str(write_rewrite_sample(REWRITE_PASSAGES_PER_LANGUAGE))


# -- progress ---------------------------------------------------------------------------
class _Line:
    def __init__(self, tracker: DemoTracker, name: str, task: Any) -> None:
        self.tracker, self.name, self.task, self.text = tracker, name, task, ""

    def note(self, text: str) -> None:
        self.text = text
        if self.task is not None:
            self.tracker.progress.update(self.task, note=text)


class DemoTracker:
    """One line per stage: name, a bar (pulsing while it runs), time, what it produced.

    On a terminal the lines are live (rich); elsewhere (CI logs, tests) each stage prints
    one plain line when it ends.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(bar_width=20),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
        )
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> DemoTracker:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    @contextmanager
    def stage(self, name: str) -> Iterator[_Line]:
        task = self.progress.add_task(name, total=None, note="") if self.live else None
        line = _Line(self, name, task)
        start = time.monotonic()
        try:
            yield line
        except BaseException:
            line.note(f"[red]failed[/red] {line.text}")
            raise
        finally:
            self.seconds[name] = round(time.monotonic() - start, 1)
        if task is not None:
            self.progress.update(task, total=1, completed=1)
        else:
            self.console.print(
                f"{name:<12} done {self.seconds[name]:>6.1f} s  {line.text}", highlight=False
            )


# -- quiet Ray --------------------------------------------------------------------------
def init_ray_for_demo(cfg: PipelineConfig, verbose: bool) -> None:
    """Start (or join) Ray with worker output kept out of the terminal unless verbose."""
    import ray.data  # its progress bars would fill the log with redraws

    if ray.is_initialized():
        return
    if not verbose:
        ray.data.DataContext.get_current().enable_progress_bars = False
    init_ray(
        cfg.ray.address,
        cfg.ray.num_cpus,
        cfg.ray.env_vars,
        log_to_driver=verbose,
        logging_level=logging.INFO if verbose else logging.WARNING,
    )


@contextmanager
def output_to(log_path: Path | None) -> Iterator[None]:
    """Send this process's output to `log_path`: file descriptors 1 and 2 (Ray's and C
    libraries' output), sys.stdout / sys.stderr (Tune's tables, also when an in-process
    runner has replaced them) and the root logger's console handlers. None leaves them
    alone (--verbose)."""
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    consoles = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    handlers = [
        h for h in logging.getLogger().handlers
        if type(h) is logging.StreamHandler and h.stream in consoles
    ]  # fmt: skip
    with log_path.open("a", buffering=1, encoding="utf-8") as log_file:
        streams = [h.setStream(log_file) for h in handlers]
        try:
            with redirect_stdout(log_file), redirect_stderr(log_file):
                yield
        finally:
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def terminal_stream() -> TextIO:
    """Where the progress lines go: the terminal even while fd 1 points at the log."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # an in-process runner's buffer
        return sys.stdout
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", closefd=True)


def demo_log_path(cfg: PipelineConfig) -> Path:
    """`<run>/demo.log` for a local run root; a temp file when the root is a URI."""
    if storage.is_uri(cfg.run.root):
        return Path(tempfile.mkdtemp(prefix="medbase-demo-")) / "demo.log"
    return Path(cfg.run.root, cfg.run.name, "demo.log").absolute()


# -- the end ----------------------------------------------------------------------------
def usage_examples(base_url: str, model: str) -> list[str]:
    """A `curl` and an `openai` call of the endpoint, as shell commands."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 32,
    }
    auth = (
        ' -H "Authorization: Bearer $MEDBASE_API_KEY"' if os.environ.get("MEDBASE_API_KEY") else ""
    )
    curl = (
        f"curl -s {base_url}/chat/completions -H 'Content-Type: application/json'{auth} "
        f"-d {shlex.quote(json.dumps(body))}"
    )
    # Double quotes inside the script, so that the shell's single quotes wrap it cleanly.
    script = (
        "import os; from openai import OpenAI; "
        f"c = OpenAI(base_url={json.dumps(base_url)}, "
        'api_key=os.environ.get("MEDBASE_API_KEY", "none")); '
        f"r = c.chat.completions.create(model={json.dumps(model)}, messages=[{{"
        f'"role": "user", "content": {json.dumps(QUESTION)}}}], max_tokens=32); '
        "print(r.choices[0].message.content)"
    )
    return [curl, f"python -c {shlex.quote(script)}"]


def write_demo_record(
    cfg: PipelineConfig, argv: list[str], tracker: DemoTracker, out: dict
) -> None:
    """`<run>/demo.json`: the command, each stage's seconds, the endpoint (the report
    shows them)."""
    record = {
        "command": shlex.join(argv),
        "stage_seconds": tracker.seconds,
        "total_s": round(sum(tracker.seconds.values()), 1),
        "endpoint": out.get("endpoint"),
    }
    path = storage.join(cfg.run.root, cfg.run.name, "demo.json")
    storage.write_bytes(path, json.dumps(record, indent=2).encode())


def run_demo(
    cfg: PipelineConfig,
    verbose: bool = False,
    wait: bool | None = None,
    argv: list[str] | None = None,
) -> int:
    """Run the pipeline on the demo's settings; returns the process exit code.

    wait: keep the endpoint up until Ctrl-C (None: when stdin and stdout are terminals).
    """
    cfg = apply_demo_defaults(cfg.model_copy(deep=True))
    apply_rewrite_sample(cfg)
    if wait is None:
        wait = sys.stdin.isatty() and sys.stdout.isatty()
    console = Console(file=terminal_stream(), highlight=False, soft_wrap=True)
    log_path = None if verbose else demo_log_path(cfg)
    console.print(
        f"medbase demo: run {cfg.run.root}/{cfg.run.name}, model {cfg.model.name_or_path}"
        + (f"; Ray and stage logs in {log_path}" if log_path else "")
    )
    tracker = DemoTracker(console)
    start = time.monotonic()
    try:
        with output_to(log_path), tracker:
            init_ray_for_demo(cfg, verbose)
            out = run_pipeline(cfg, tracker, keep_serving=True)
    except KeyboardInterrupt:
        console.print("interrupted; a re-run resumes from the finished stages")
        return 130
    except Exception as exc:
        console.print(f"[red]error[/red]: {type(exc).__name__}: {exc}")
        if log_path is not None and log_path.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            console.print(f"last lines of {log_path}:\n" + "\n".join(tail), markup=False)
        return 1
    write_demo_record(cfg, argv or sys.argv, tracker, out)
    write_report(storage.join(cfg.run.root, cfg.run.name))  # again, with demo.json
    console.print(format_comparison(out["before"], out["after"]), markup=False)
    model = cfg.serve.model_id or derive_model_id(out["train"]["checkpoint"])
    console.print(f"done in {time.monotonic() - start:.0f} s")
    console.print(f"report:   {out['report']}")
    console.print(f"endpoint: {out['endpoint']} (model {model!r})")
    for example in usage_examples(out["endpoint"], model):
        console.print(f"  {example}", markup=False, soft_wrap=True)
    if wait:
        console.print("serving until Ctrl-C")
        wait_until_interrupted(TRAINED_APP)
    # Without waiting, the endpoint lives as long as this process's Ray (an in-process
    # caller, such as the tests, can still query it).
    return 0
