"""`ray job submit` entrypoint of the train stage: parse arguments, call the library.

    ray job submit --working-dir . -- python jobs/train.py --preset cluster-7b \
        --set model.name_or_path=/mnt/models/Qwen2-7B --set run.root=s3://bucket/medbase
    ray job submit --working-dir . -- python jobs/train.py --preset tiny --resume

Ray sets RAY_ADDRESS inside a job, so the same run_train joins the cluster. Checkpoints
go to train.storage_path (default <run.root>/<run.name>/train); the last line printed is
a JSON object naming the final checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging

from medbase_ray.config import load_config
from medbase_ray.train.data import load_dev_data
from medbase_ray.train.run import run_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", help="pipeline config YAML")
    parser.add_argument("--preset", help="shipped preset (tiny, qwen2.5-0.5b, cluster-7b)")
    parser.add_argument("--set", "-s", action="append", default=[], dest="overrides")
    parser.add_argument("--data", help="prepared directory (default: <run>/prepared)")
    parser.add_argument("--dev-data", help="prepared directory for the dev loss")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    cfg = load_config(args.config, args.overrides, preset=args.preset)
    dev = load_dev_data(cfg, args.dev_data) if args.dev_data else None
    out = run_train(cfg, dev_dataset=dev, resume=args.resume, data_dir=args.data)
    print(
        json.dumps({"checkpoint": out["checkpoint"], "steps": out["steps"], "final": out["final"]})
    )


if __name__ == "__main__":
    main()
