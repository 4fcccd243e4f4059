"""The mixture optimizer: parallel trials, early stopping, the regression's proposal.

    python benchmarks/tune.py            # parallel: 4 trials of 1200 steps; ASHA/FIFO and
                                         # the proposal: 12 trials of 18 steps (~45 min)
    python benchmarks/tune.py --asha-only    # ASHA/FIFO and the proposal only (~15 min)
    python benchmarks/tune.py --quick    # 2 trials of 2 steps: the parallel figure only
                                         # (~3 min: each trial is a whole Ray Train run)
    python benchmarks/tune.py --parallel-steps 48 --parallel-only   # startup-bound trials

One local Ray of 2 CPUs, the embedded tiny model, the bundled sample prepared in
128-token rows, 1-worker (1-CPU) trials:
- wall time of N trials run by the sweep (two at a time) against the same N trainings
  one after another (`run_train` in this process). Goal: >= 1.6x. Each trial, like any
  Ray Train run, first starts ~9 processes (the Tune trial, the Train controller, its
  placement-group cleaner, preemption watcher and synchronization actors, Ray Data's
  split coordinator and dataset manager, the worker: ~55 CPU-seconds of imports and
  setup here), so the figure depends on how long a trial trains: the default trials
  train ~4 min each (a short real trial); `--parallel-steps 48` shows the startup-bound
  case. A second row gives the ceiling of that figure, for trials of any length: twice
  the seconds a step of a lone training over those of one beside another, timed between
  each run's first and last log row (dev accuracy is logged every sixth of a trial).
- ASHA against FIFO on the same random trials (same seed): the trial-steps ASHA spent,
  as a share of FIFO's, and whether it still found FIFO's best objective. Goal: <= 60%.
  Rungs at a ninth, a third and all of the trial (reduction factor 3); a further row gives
  the rank correlation of FIFO's trials at the first rung with their end: ASHA's
  premise, which a tiny model's first steps on a 20-items-a-language dev set barely hold.
- the regression's proposal (trained as the final trial) against the best random trial
  of the FIFO sweep, per language and macro (the proposal costs one more training).

Prints a Markdown table, then (last line) one JSON list of
{"name", "value", "goal", "higher_is_better"}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

from medbase_ray.config import load_config
from medbase_ray.prepare.pipeline import run_prepare
from medbase_ray.ray_runtime import init_ray
from medbase_ray.train.metrics import read_metrics
from medbase_ray.train.run import run_train
from medbase_ray.tune.regression import spearman
from medbase_ray.tune.space import shares, trial_config
from medbase_ray.tune.sweep import run_tune

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LANGS = ["en", "zh", "es", "fr", "ar", "hi"]


def sweep_overrides(root: Path, name: str, steps: int, n: int, *more: str) -> list[str]:
    return [
        f"run.root={root}",
        f"run.name={name}",
        "prepare.seq_len=128",
        "train.num_workers=1",
        "train.micro_batch_size=2",
        "train.lr=3e-3",
        f"tune.trial_max_steps={steps}",
        f"tune.num_samples={n}",
        "tune.max_concurrent_trials=2",
        "tune.proposal_candidates=5000",
        *more,
    ]


def step_seconds(runs: Path) -> float | None:
    """Mean seconds a step between each run's first and last metrics.csv row (from
    `elapsed_s`): the training speed without the run's start-up; None with one row."""
    spans = []
    for csv_path in sorted(runs.glob("*/metrics.csv")):
        logged = [r for r in read_metrics(csv_path) if r.get("elapsed_s") is not None]
        if len(logged) >= 2 and logged[-1]["step"] > logged[0]["step"]:
            spans.append((logged[-1]["elapsed_s"] - logged[0]["elapsed_s"])
                         / (logged[-1]["step"] - logged[0]["step"]))  # fmt: skip
    return sum(spans) / len(spans) if spans else None


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 trials of 2 steps")
    parser.add_argument(
        "--steps", type=int, default=18, help="steps per ASHA/FIFO trial (default 18)"
    )
    parser.add_argument(
        "--parallel-steps", type=int, default=1200, help="steps per parallel trial (1200)"
    )
    parser.add_argument(
        "--parallel-trials", type=int, default=4, help="trials of the parallel figure (4)"
    )
    parser.add_argument(
        "--samples", type=int, default=12, help="trials of the ASHA/FIFO sweeps (default 12)"
    )
    parser.add_argument(
        "--parallel-only", action="store_true", help="only the sweep against one after another"
    )
    parser.add_argument(
        "--asha-only", action="store_true", help="only ASHA against FIFO and the proposal"
    )
    args = parser.parse_args()
    n, steps = (2, 2) if args.quick else (args.samples, args.steps)
    par_n, par_steps = (2, 2) if args.quick else (args.parallel_trials, args.parallel_steps)
    init_ray(num_cpus=2)
    root = Path(tempfile.mkdtemp(prefix="medbase-bench-tune-"))
    prep_cfg = load_config(preset="tiny", overrides=[f"run.root={root}", "run.name=p",
                                                     "prepare.seq_len=128"])  # fmt: skip
    prepared = run_prepare(prep_cfg)["output_dir"]
    figures, rows = [], []

    if not args.asha_only:
        # 1. The sweep against the same trainings one after another.
        points = [{lang: 1.0 + (i + j) % 3 for j, lang in enumerate(LANGS)}
                  for i in range(par_n)]  # fmt: skip
        # A log row (and a dev evaluation, on both sides) every sixth of a trial: the
        # per-step time after the first row is the trials' speed without their start-up.
        par_cfg = load_config(preset="tiny", overrides=sweep_overrides(
            root, "parallel", par_steps, 1, "tune.search=grid", f"tune.grid={json.dumps(points)}",
            "tune.baselines=[]", "tune.propose=false",
            f"tune.eval_steps={max(1, par_steps // 6)}"))  # fmt: skip
        # One training first, untimed: the first run of a session compiles DeepSpeed's CPU op
        # and fills caches, a cost neither side should carry (2 steps do it).
        warm = par_cfg.model_copy(deep=True)
        warm.tune.trial_max_steps = 2
        run_train(trial_config(warm, shares(points[0]), str(root / "warm")),
                  data_dir=prepared)  # fmt: skip
        _, sweep_s = timed(lambda: run_tune(par_cfg, data_dir=prepared))

        def one_after_another() -> None:
            for i, point in enumerate(points):
                run_train(trial_config(par_cfg, shares(point), str(root / "serial" / str(i))),
                          data_dir=prepared)  # fmt: skip

        _, serial_s = timed(one_after_another)
        speedup = serial_s / sweep_s
        rows.append((f"{par_n} trials of {par_steps} steps: sweep vs one after another",
                     f"{sweep_s:.0f} s vs {serial_s:.0f} s", f"{speedup:.2f}x", ">= 1.6x"))  # fmt: skip
        figures.append({"name": "tune_parallel_speedup", "value": round(speedup, 3), "goal": 1.6,
                        "higher_is_better": True})  # fmt: skip
        side = step_seconds(root / "parallel" / "tune" / "trials")
        alone = step_seconds(root / "serial")
        if side and alone:
            ceiling = 2 * alone / side  # two at a time, each at alone/side of its lone speed
            rows.append(("seconds a step after the first log row: side by side vs alone",
                         f"{side:.3f} vs {alone:.3f}", f"{ceiling:.2f}x at most",
                         "(what any trial length can reach)"))  # fmt: skip
            figures.append({"name": "tune_parallel_ceiling", "value": round(ceiling, 3),
                            "goal": 1.6, "higher_is_better": True})  # fmt: skip

    if not (args.quick or args.parallel_only):
        # 2. ASHA against FIFO on the same random trials; 3. the proposal (FIFO sweep).
        # ASHA's rungs at grace x 3^k (reduction factor 3): with grace a ninth of the trial,
        # three rungs (Hyperband's usual max_t = grace x eta^2), dev accuracy (a report to
        # Tune) at every multiple of grace on both sides.
        every = max(1, steps // 9)
        common = ("tune.search=random", "tune.baselines=[equal]", f"tune.eval_steps={every}")
        fifo = run_tune(load_config(preset="tiny", overrides=sweep_overrides(
            root, "fifo", steps, n, *common)), data_dir=prepared)  # fmt: skip
        asha = run_tune(load_config(preset="tiny", overrides=sweep_overrides(
            root, "asha", steps, n, *common, "tune.scheduler=asha", "tune.propose=false",
            f"tune.grace_period_steps={every}")), data_dir=prepared)  # fmt: skip
        sweep_only = [r for r in fifo["trials"] if r["origin"] != "proposal"]
        fifo_best = max(r["dev_accuracy"] for r in sweep_only)
        fifo_steps = sum(r["step"] for r in sweep_only)
        asha_best = max(r["dev_accuracy"] for r in asha["trials"])
        share = asha["trial_steps"] / fifo_steps
        rows.append(("ASHA trial-steps / FIFO's", f"{asha['trial_steps']} / {fifo_steps}",
                     f"{share:.0%} (best {asha_best:.3f} vs FIFO {fifo_best:.3f})", "<= 60%"))  # fmt: skip
        figures.append({"name": "tune_asha_trial_steps_share", "value": round(share, 3),
                        "goal": 0.6, "higher_is_better": False})  # fmt: skip
        figures.append({"name": "tune_asha_reached_fifo_best", "value": int(asha_best >= fifo_best),
                        "goal": 1, "higher_is_better": True})  # fmt: skip
        # ASHA's premise: a trial's rank at the first rung foretells its rank at the end.
        # FIFO ran every trial to the end, reporting at every rung: how far does it hold here?
        rho = spearman([r["by_step"][str(every)]["dev_accuracy"] for r in sweep_only],
                       [r["dev_accuracy"] for r in sweep_only])  # fmt: skip
        verdict = ("a side all ties" if math.isnan(rho)  # spearman: nan when one is constant
                   else "ASHA's premise holds" if rho >= 0.5 else "rung 1 is mostly noise")  # fmt: skip
        rows.append((f"FIFO trials: Spearman of step {every} (ASHA's first rung) with step {steps}",
                     f"{rho:.2f}", verdict, "(report)"))  # fmt: skip
        proposal = next((r for r in fifo["trials"] if r["origin"] == "proposal"), None)
        best_random = max(sweep_only, key=lambda r: r["dev_accuracy"])
        if proposal is not None:
            for key in ["dev_accuracy"] + [f"dev_accuracy_{lang}" for lang in LANGS]:
                rows.append((f"proposal vs best random: {key}",
                             f"{proposal[key]:.3f} vs {best_random[key]:.3f}",
                             f"{proposal[key] - best_random[key]:+.3f}", "report both"))  # fmt: skip
            figures.append({"name": "tune_proposal_minus_best_random_macro",
                            "value": round(proposal["dev_accuracy"] - best_random["dev_accuracy"], 4),
                            "goal": 0.0, "higher_is_better": True})  # fmt: skip
            reg = fifo["regression"]
            rows.append(("regression: LOO Spearman (macro), trusted",
                         f"{reg['fits']['dev_accuracy']['loo_spearman']:.2f}", str(reg["trusted"]),
                         reg.get("why_not") or ""))  # fmt: skip

    print("| figure | measured | result | goal |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
