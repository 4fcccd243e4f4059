"""`ray job submit` entrypoint of the tune stage: sweep the language mixing ratios.

    ray job submit --working-dir . -- python jobs/tune.py --preset tiny \
        --set tune.num_samples=8 --set tune.trial_max_steps=200
    ray job submit --working-dir . -- python jobs/tune.py --preset cluster-7b \
        --set run.root=s3://bucket/medbase --set tune.max_concurrent_trials=4

Each trial is a Ray Train run on its own worker group (train.num_workers workers), so
an autoscaling cluster grows to max_concurrent_trials x that. The last line printed is a
JSON object: the metric, the best mixture's shares and the output directory.
"""

from __future__ import annotations

import argparse
import json
import logging

from medbase_ray.config import load_config
from medbase_ray.tune.sweep import run_tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", help="pipeline config YAML")
    parser.add_argument("--preset", help="shipped preset (tiny, qwen2.5-0.5b, cluster-7b)")
    parser.add_argument("--set", "-s", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    cfg = load_config(args.config, args.overrides, preset=args.preset)
    out = run_tune(cfg)
    print(out["table"])
    best = out["best"]
    print(json.dumps({"metric": out["metric"], "value": best.get(out["metric"]),
                      "shares": best["shares"], "tune_dir": out["tune_dir"]}))  # fmt: skip


if __name__ == "__main__":
    main()
