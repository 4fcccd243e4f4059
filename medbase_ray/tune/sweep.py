"""The sweep's Ray layer: Ray Tune runs one trial per language mixture; each trial is
a Ray Train run (the train stage, DeepSpeed on its own worker group) on the prepared
rows mixed with the trial's weights, scored on the benchmark's dev split at the end.

Outputs in `<run>/tune/`: `results.json` (every trial: weights, shares, dev accuracy per
language, final loss, checkpoint), `results.md` (the same, ranked), `best_config.yaml`
(the sweep's config with the best mixture: `medbase train -c best_config.yaml
--set run.name=best` trains on it) and
`_SUCCESS` last; Ray Tune's own experiment state is under `ray/`, each trial's run
under `trials/<trial id>/`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import yaml

from medbase_ray.config import PipelineConfig
from medbase_ray.tune.space import (
    format_table,
    params_of,
    rank_trials,
    shares,
    trial_config,
    trial_weights,
)

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
# A Tune trial only drives a Ray Train run, whose workers hold the CPUs/GPUs. Ray
# refuses an all-zero request, so the driver asks for a token of memory instead.
TRIAL_DRIVER_RESOURCES = {"CPU": 0, "memory": 64 * 1024**2}
# Figures of a trial's last report kept in results.json (with every dev_* figure).
_KEEP = ("loss", "token_accuracy", "step", "steps", "checkpoint")


class TuneRunError(RuntimeError):
    """The sweep could not give a result (every trial failed)."""


def _abs(path: str) -> str:
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def search_space(cfg: PipelineConfig) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """(Tune param_space, points evaluated first) for `cfg.tune`."""
    from ray import tune

    t = cfg.tune
    if t.search == "grid":
        points = [params_of({lang: p.get(lang, 0.0) for lang in t.languages}) for p in t.grid]
        # One grid axis over whole mixtures (not a product over languages).
        return {"mixture": tune.grid_search(points)}, []
    low, high = t.weight_range
    space = {f"w_{lang}": tune.loguniform(low, high) for lang in t.languages}
    first = [params_of(dict.fromkeys(t.languages, 1.0))] if t.include_equal else []
    return space, first


def run_trial(params: dict[str, Any], config_yaml: str, prepared_dir: str, tune_dir: str) -> None:
    """One trial (runs in a Tune actor): train on the trial's mixture, report dev figures."""
    from ray import tune

    from medbase_ray.train.run import run_train

    cfg = PipelineConfig.model_validate(yaml.safe_load(config_yaml))
    weights = trial_weights(params)
    trial_id = tune.get_context().get_trial_id()
    tcfg = trial_config(cfg, weights, f"{tune_dir}/trials/{trial_id}")
    out = run_train(tcfg, data_dir=prepared_dir)
    final = {k: v for k, v in out["final"].items() if isinstance(v, int | float)}
    realised = (out.get("mixture") or {}).get("language_shares", {})
    tune.report(
        final
        | {f"realised_{lang}": share for lang, share in realised.items()}
        | {"checkpoint": out["checkpoint"], "steps": out["steps"]}
    )


def run_tune(cfg: PipelineConfig) -> dict[str, Any]:
    """Sweep the language mixing ratios; returns {"trials": ranked rows, "best", "table",
    "tune_dir"}. A finished sweep in the run directory is returned as it is."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from medbase_ray import storage
    from medbase_ray.config import dump_config
    from medbase_ray.prepare.pipeline import run_prepare
    from medbase_ray.ray_runtime import init_ray

    t = cfg.tune
    tune_dir = _abs(cfg.run.stage_dir("tune"))
    done = storage.join(tune_dir, "results.json")
    if storage.exists(storage.join(tune_dir, SUCCESS)):
        log.info("tune: %s is complete; skipping", tune_dir)
        return json.loads(storage.read_bytes(done))
    init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.env_vars)
    run_prepare(cfg)  # skips when <run>/prepared is complete
    prepared_dir = _abs(cfg.run.stage_dir("prepared"))

    space, first = search_space(cfg)
    trainable = tune.with_parameters(
        run_trial, config_yaml=dump_config(cfg), prepared_dir=prepared_dir, tune_dir=tune_dir
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, TRIAL_DRIVER_RESOURCES),
        param_space=space,
        tune_config=tune.TuneConfig(
            num_samples=t.num_samples,
            max_concurrent_trials=t.max_concurrent_trials,
            search_alg=BasicVariantGenerator(points_to_evaluate=first, random_state=t.seed),
        ),
        run_config=tune.RunConfig(name="sweep", storage_path=f"{tune_dir}/ray", verbose=1),
    )
    log.info(
        "tune: %s search, %d trial(s) of %d steps over %s; results in %s",
        t.search, t.num_samples * (len(t.grid) if t.search == "grid" else 1), t.trial_max_steps,
        ",".join(t.languages), tune_dir,
    )  # fmt: skip
    grid = tuner.fit()

    rows, failed = [], []
    for result in grid:
        params = result.config or {}
        weights = trial_weights(params)
        trial_id = os.path.basename(result.path) if result.path else "?"
        if result.error is not None or not result.metrics:
            failed.append({"trial": trial_id, "weights": weights, "error": str(result.error)})
            continue
        m = result.metrics
        rows.append(
            {"trial": m.get("trial_id", trial_id), "weights": weights, "shares": shares(weights),
             "realised_shares": {k[9:]: v for k, v in m.items() if k.startswith("realised_")}}
            | {k: v for k, v in m.items() if k in _KEEP or k.startswith("dev_")}
        )  # fmt: skip
    if not rows:
        raise TuneRunError(f"every trial of the sweep in {tune_dir} failed: {failed}")
    ranked = rank_trials(rows, t.metric, t.mode)
    table = format_table(ranked, t.languages, t.metric)
    best = ranked[0]
    summary = {
        "metric": t.metric, "mode": t.mode, "tune_dir": tune_dir, "best": best,
        "trials": ranked, "failed": failed, "table": table,
    }  # fmt: skip
    best_cfg = cfg.model_copy(deep=True)
    best_cfg.mixture.by, best_cfg.mixture.weights = "language", best["shares"]
    best_cfg.mixture.temperature_alpha = None
    storage.write_bytes(
        storage.join(tune_dir, "results.json"), json.dumps(summary, indent=2).encode()
    )
    storage.write_bytes(storage.join(tune_dir, "results.md"), (table + "\n").encode())
    storage.write_bytes(storage.join(tune_dir, "best_config.yaml"), dump_config(best_cfg).encode())
    storage.write_bytes(storage.join(tune_dir, SUCCESS), b"")
    return summary
