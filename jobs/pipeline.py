"""`ray job submit` entrypoint of the whole pipeline: prepare -> train -> serve -> eval.

    ray job submit --working-dir . -- python jobs/pipeline.py --preset tiny
    ray job submit --working-dir . -- python jobs/pipeline.py --preset cluster-7b \
        --set model.name_or_path=/mnt/models/Qwen2-7B --set run.root=s3://YOUR-BUCKET/medbase

Each stage skips complete outputs, so a re-submitted job resumes where the last stopped.
"""

from __future__ import annotations

import argparse
import logging

from medbase_ray.config import load_config
from medbase_ray.pipeline import format_comparison, run_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", help="pipeline config YAML")
    parser.add_argument("--preset", help="shipped preset (tiny, qwen2.5-0.5b, cluster-7b)")
    parser.add_argument("--set", "-s", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = load_config(args.config, args.overrides, preset=None if args.config else args.preset)
    result = run_pipeline(cfg)
    print(format_comparison(result["before"], result["after"]))


if __name__ == "__main__":
    main()
