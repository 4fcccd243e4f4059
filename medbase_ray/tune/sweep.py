"""The mixture optimizer's Ray layer: Ray Tune runs one trial per language mixture;
each trial is a Ray Train run (the train stage, DeepSpeed on its own worker group) on
the prepared rows mixed with the trial's weights, whose reports (dev accuracy per
language every `tune.eval_steps`) stream to Tune through `TuneReportCallback`, so a
scheduler (ASHA) can stop poor trials early and a searcher (Optuna's TPE) learns from
them. After the trials a regression proposes a mixture, trained as a final trial.

    from medbase_ray.tune.sweep import run_tune
    out = run_tune(load_config(preset="tiny"))          # medbase tune [--resume]
    out["best"]["shares"], out["proposal"]

Outputs in `<run>/tune/` (medbase_ray.tune.outputs); Ray Tune's experiment state is
under `ray/sweep` and `ray/proposal` (what `--resume` restores), each trial's train run
under `trials/<trial id>/`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pyarrow as pa
import ray
import yaml
from ray import tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from medbase_ray import storage
from medbase_ray.config import PipelineConfig, dump_config
from medbase_ray.models.loading import load_tokenizer
from medbase_ray.prepare.manifest import read_manifest
from medbase_ray.prepare.pipeline import run_prepare
from medbase_ray.ray_runtime import init_ray
from medbase_ray.stage import StageOutput
from medbase_ray.train.data import load_prepared
from medbase_ray.train.run import run_train
from medbase_ray.tune.analysis import (
    accuracy_key,
    choose_and_front,
    fit_and_propose,
    measured_against_predicted,
)
from medbase_ray.tune.baselines import language_tokens, named_mixtures
from medbase_ray.tune.outputs import write_outputs
from medbase_ray.tune.space import (
    params_of,
    shares,
    token_shares,
    trial_config,
    trial_tokens,
    trial_weights,
)

log = logging.getLogger(__name__)

# A Tune trial only drives a Ray Train run, whose workers hold the CPUs/GPUs. Ray
# refuses an all-zero request, so the driver asks for a token of memory instead.
TRIAL_DRIVER_RESOURCES = {"CPU": 0, "memory": 64 * 1024**2}
SWEEP, PROPOSAL = "sweep", "proposal"  # the two Tune experiments under <tune>/ray/
# Figures of a trial's last report kept in the results (with every dev_* figure).
_KEEP = ("loss", "token_accuracy", "step")
TRIAL_FILE = "trial.json"  # in trials/<id>/: the realised shares of the rows trained


class TuneRunError(RuntimeError):
    """The sweep could not give a result (every trial failed, or it needs --resume)."""


class InjectedTrialFailure(RuntimeError):
    """The failure `tune.fault_injection` asks for (tests of the sweep's robustness)."""


def run_trial(params: dict[str, Any], config_yaml: str, prepared_dir: str, tune_dir: str) -> None:
    """One trial (a Tune function trainable): a Ray Train run on the trial's mixture
    whose reports (with the checkpoint's path at the last) reach Tune as they come."""
    cfg = PipelineConfig.model_validate(yaml.safe_load(config_yaml))
    trial_id = tune.get_context().get_trial_id()
    tcfg = trial_config(cfg, trial_weights(params), storage.join(tune_dir, "trials", trial_id))
    fault = cfg.tune.fault_injection
    failing = fault is not None and trial_ordinal(trial_id) == fault.trial
    if failing:
        # It fails on reaching at_step: the steps before it are trained and reported.
        # (Ending at at_step itself would race ASHA, which may stop a trial at a rung
        # report before the failure is raised.)
        tcfg.train.max_steps = fault.at_step - 1
    # The rows this trial trains on, read before its workers start: trials side by side
    # hold every CPU with their workers, and streaming ingest would wait for a CPU that
    # never frees. A trial reads a few steps' rows, so they fit in the object store.
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    dataset, mixture = load_prepared(tcfg, prepared_dir, tokenizer)
    t = tcfg.train
    rows = t.max_steps * t.micro_batch_size * t.grad_accum_steps * t.num_workers
    # A seeded sample across the whole mixture, not its first rows: the mixture is read
    # a few row groups at a time, so its first rows come from a few sources only.
    fraction = min(1.0, 2.0 * rows / max(mixture["rows"], 1))
    sample = dataset.random_sample(fraction, seed=tcfg.mixture.seed) if fraction < 1 else dataset
    trained = sample.limit(rows).materialize()
    realised = token_shares(pa.concat_tables(ray.get(trained.to_arrow_refs())))
    # Beside the train run, for the driver: Tune may stop the trial at any report (ASHA
    # at a rung or at max_t), so everything the results need is known by then.
    storage.write_bytes(
        storage.join(tcfg.train.storage_path, TRIAL_FILE),
        json.dumps({"realised_shares": realised}).encode(),
    )
    # resume: a trial restarted by `--resume` continues its train run instead of refusing.
    run_train(tcfg, dataset=trained, resume=True, callbacks=[TuneReportCallback()])
    if failing:
        raise InjectedTrialFailure(
            f"tune.fault_injection: trial {trial_id} at step {fault.at_step}"
        )


def trial_ordinal(trial_id: str) -> int:
    """The trial's number in its experiment (Tune ids end in `_00003`)."""
    return int(trial_id.rsplit("_", 1)[-1])


def build_search(cfg: PipelineConfig, named: dict[str, dict[str, float]]) -> tuple[dict, Any]:
    """(param_space, search_alg) of `tune.search`, the named mixtures evaluated first."""
    t = cfg.tune
    # Weights are shares x the number of languages: the equal mixture is all 1s, inside
    # the random search's weight_range (the trial normalises them back to the shares).
    n = len(t.languages)
    points = [params_of({lang: share * n for lang, share in s.items()}) for s in named.values()]
    if t.search == "grid":
        grid = [params_of({lang: p.get(lang, 0.0) for lang in t.languages}) for p in t.grid]
        # One grid axis over whole mixtures (not a product over languages).
        return {"mixture": tune.grid_search(points + grid)}, None
    if t.search == "random":
        low, high = t.weight_range
        space = {f"w_{lang}": tune.loguniform(low, high) for lang in t.languages}
        # Tune applies max_concurrent_trials to Searchers only: this generator takes its own.
        return space, BasicVariantGenerator(
            points_to_evaluate=points, random_state=t.seed, max_concurrent=t.max_concurrent_trials
        )
    # Imported here: optuna is only needed by this search.
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    # TPE over the simplex: each weight uniform in [0, 1], the trial normalises them.
    space = {f"w_{lang}": tune.uniform(0.0, 1.0) for lang in t.languages}
    metric, mode = (
        ([accuracy_key(lang) for lang in t.languages], ["max"] * len(t.languages))
        if t.objectives == "per_language"
        else (t.metric, t.mode)
    )
    searcher = OptunaSearch(
        metric=metric,
        mode=mode,
        points_to_evaluate=points,
        sampler=optuna.samplers.TPESampler(seed=t.seed),
    )
    return space, searcher


def build_scheduler(cfg: PipelineConfig):
    t = cfg.tune
    if t.scheduler == "fifo":
        return FIFOScheduler()
    # Training steps as time: rungs at grace_period_steps x reduction_factor^k.
    return ASHAScheduler(
        time_attr="step",
        metric=t.metric,
        mode=t.mode,
        max_t=t.trial_max_steps,
        grace_period=t.grace_period_steps,
        reduction_factor=t.reduction_factor,
    )


def _tuner(
    cfg: PipelineConfig, name: str, space: dict, search_alg, num_samples: int, resume: bool,
    prepared_dir: str, out: StageOutput,
) -> tune.Tuner:  # fmt: skip
    """The experiment `name` under <tune>/ray: restored when resuming, else new."""
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, config_yaml=dump_config(cfg), prepared_dir=prepared_dir, tune_dir=out.uri
        ),
        TRIAL_DRIVER_RESOURCES,
    )
    path = out.child("ray", name)
    if tune.Tuner.can_restore(path):
        if not resume:
            raise TuneRunError(
                f"{out} holds an unfinished sweep ({path}): pass --resume to continue it, "
                "or choose another run.name"
            )
        log.info("tune: resuming %s (finished trials are kept)", path)
        return tune.Tuner.restore(path, trainable, resume_errored=False, restart_errored=False)
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            num_samples=num_samples,
            max_concurrent_trials=cfg.tune.max_concurrent_trials,
            search_alg=search_alg,
            scheduler=build_scheduler(cfg) if name == SWEEP else FIFOScheduler(),
        ),
        run_config=tune.RunConfig(name=name, storage_path=out.child("ray"), verbose=1),
    )


def collect_trials(
    grid, cfg: PipelineConfig, named: dict[str, dict[str, float]], origin: str, out: StageOutput
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(finished trials, failed trials) of a Tune ResultGrid as result rows."""
    rows, failed = [], []
    for result in grid:
        weights = trial_weights(result.config or {})
        target = shares(weights)
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or str(result.path).rsplit("/", 1)[-1]
        base = {"trial": trial_id, "origin": _origin(target, named, origin), "weights": weights}
        if result.error is not None or not metrics:
            failed.append(base | {"step": metrics.get("step"), "error": str(result.error)})
            continue
        step = metrics.get("step")
        trial_file = out.child("trials", trial_id, TRIAL_FILE)
        extra = json.loads(storage.read_bytes(trial_file)) if storage.exists(trial_file) else {}
        rows.append(
            base
            | {"shares": target, "stopped_early": step is None or step < cfg.tune.trial_max_steps}
            | {"realised_shares": extra.get("realised_shares", {})}
            # The last checkpoint the trial reported (an HF model directory).
            | {"checkpoint": metrics.get(CHECKPOINT_PATH_KEY)}
            | {k: v for k, v in metrics.items() if k in _KEEP or k.startswith("dev_")}
            | {"by_step": figures_by_step(result)}
        )
    return rows, failed


def figures_by_step(result) -> dict[str, dict[str, float]]:
    """{step (as a string, as JSON keeps it): the dev figures the trial reported then}:
    every report of the trial's last run, from Tune's own record of them.

    A trial still running when the driver died is run again from its start on
    `--resume`, and Tune appends the new run's reports to the old ones; a step that
    does not follow the one before starts the record over, so the figures are those
    of the run `Result.metrics` ends (which ASHA may stop earlier than the first)."""
    frame = getattr(result, "metrics_dataframe", None)
    if frame is None or "step" not in frame:
        return {}
    keys = [c for c in frame.columns if c.startswith("dev_")]
    out: dict[str, dict[str, float]] = {}
    last = -1
    for record in frame[["step", *keys]].to_dict("records"):
        if record["step"] != record["step"]:  # NaN: a report without a step
            continue
        step = int(record["step"])
        if step <= last:
            out = {}
        last = step
        figures = {k: float(v) for k, v in record.items() if k in keys and v == v}  # not NaN
        if figures:
            out[str(step)] = figures
    return out


def _origin(target: dict[str, float], named: dict[str, dict[str, float]], default: str) -> str:
    for name, mixture in named.items():
        if all(abs(target.get(k, 0.0) - v) < 1e-9 for k, v in mixture.items()):
            return name
    return default


def measure_proposal(
    cfg: PipelineConfig, proposal: dict[str, Any], resume: bool, prepared_dir: str, out: StageOutput
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train the proposed mixture as a final trial (measured like the others, no fault
    injected); adds its trial id and predicted-vs-measured figures to `proposal`."""
    clean = cfg.model_copy(deep=True)
    clean.tune.fault_injection = None
    point = {"mixture": tune.grid_search([params_of(proposal["shares"])])}
    result = _tuner(clean, PROPOSAL, point, None, 1, resume, prepared_dir, out).fit()
    measured, failed = collect_trials(result, cfg, {}, "proposal", out)
    if measured:
        proposal["trial"] = measured[0]["trial"]
        # Measured at the step the fit's figures came from (the trial's end, or ASHA's
        # first rung when too few trials ran every step: `fit_inputs`).
        at = measured[0]
        if proposal.get("fit_step") not in (None, cfg.tune.trial_max_steps):
            at = at | at.get("by_step", {}).get(str(proposal["fit_step"]), {})
        proposal["measured"] = measured_against_predicted(at, proposal["predicted"])
    return measured, failed


def run_tune(
    cfg: PipelineConfig, resume: bool = False, data_dir: str | None = None
) -> dict[str, Any]:
    """Optimise the language mixture; returns the summary written to results.json.

    data_dir: a prepared directory (default `<run>/prepared`, prepared when missing).
    resume: continue an interrupted sweep from Ray Tune's state (finished trials kept).
    A finished sweep in the run directory is returned as it is.
    """
    t = cfg.tune
    out = StageOutput.of(cfg.run, "tune")
    if out.is_complete():
        log.info("tune: %s is complete; skipping", out)
        return out.read_json("results.json")
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    prepared_dir = StageOutput(data_dir or run_prepare(cfg)["output_dir"]).uri
    out.begin(dump_config(cfg))
    manifest = read_manifest(prepared_dir)
    # UniMax's budget in real tokens (a trial's token slots x the rows' fill), the unit
    # of the manifest's counts.
    budget = trial_tokens(cfg) * (1.0 - float(manifest["totals"]["padding_fraction"]))
    named = named_mixtures(t, language_tokens(manifest, t.languages), budget)
    space, search_alg = build_search(cfg, named)
    num = t.num_samples
    trials = num * ((len(named) + len(t.grid)) if t.search == "grid" else 1)
    log.info(
        "tune: %s search (%s first), %d trial(s) of %d steps over %s, %s scheduler; in %s",
        t.search, ", ".join(named), trials, t.trial_max_steps, ",".join(t.languages),
        t.scheduler, out,
    )  # fmt: skip
    grid = _tuner(cfg, SWEEP, space, search_alg, num, resume, prepared_dir, out).fit()
    rows, failed = collect_trials(grid, cfg, named, t.search, out)
    if not rows:
        raise TuneRunError(f"every trial of the sweep in {out} failed: {failed}")

    regression = fit_and_propose(rows, t) if t.propose else {"proposal": None}
    proposal = regression["proposal"]
    if proposal is not None:
        measured, proposal_failed = measure_proposal(cfg, proposal, resume, prepared_dir, out)
        rows, failed = rows + measured, failed + proposal_failed
    choice = choose_and_front(rows, t)
    summary = {
        "metric": t.metric,
        "mode": t.mode,
        "trial_max_steps": t.trial_max_steps,
        "tune_dir": out.uri,
        "languages": t.languages,
        "floors": t.floors,
        "best": choice["best"],
        "best_meets_floors": choice["best_meets_floors"],
        "trials": choice["ranked"],
        "failed": failed,
        "named_mixtures": named,
        "regression": regression,
        "proposal": proposal,
        "pareto": [r["trial"] for r in choice["pareto"]],
        "trial_steps": sum(int(r.get("step") or 0) for r in rows + failed),
    }
    summary["table"] = write_outputs(out, cfg, summary)
    out.complete({k: summary[k] for k in ("metric", "mode", "best", "tune_dir")})
    return summary
