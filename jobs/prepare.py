"""`ray job submit` entrypoint of the prepare stage: parse arguments, call the library.

    ray job submit --working-dir . -- python jobs/prepare.py --preset qwen2.5-0.5b \
        --set model.name_or_path=/mnt/models/Qwen2.5-0.5B \
        --set 'prepare.inputs=["/mnt/data/ApolloCorpus"]' --set run.root=s3://bucket/medbase

Inside a job Ray sets RAY_ADDRESS, so the stage runs on the cluster unchanged. Output:
<run.root>/<run.name>/prepared/ (shards per source, manifest.json, rejects/, _SUCCESS).
"""

from __future__ import annotations

import argparse
import json
import logging

from medbase_ray.config import load_config
from medbase_ray.prepare.manifest import summary_table
from medbase_ray.prepare.pipeline import run_prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", help="pipeline config YAML")
    parser.add_argument("--preset", help="shipped preset (tiny, qwen2.5-0.5b, cluster-7b)")
    parser.add_argument("--set", "-s", action="append", default=[], dest="overrides")
    parser.add_argument("--address", help="Ray address (default: $RAY_ADDRESS, else local)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    cfg = load_config(args.config, args.overrides, preset=args.preset)
    if args.address:
        cfg.ray.address = args.address
    summary = run_prepare(cfg)
    print(summary_table(summary["manifest"]))
    totals = summary["manifest"]["totals"]
    print(
        json.dumps({"output_dir": summary["output_dir"], "skipped": summary["skipped"], **totals})
    )


if __name__ == "__main__":
    main()
