"""`ray job submit` entrypoint of the eval stage: parse arguments, call the library.

    ray job submit --working-dir . -- python jobs/eval.py --preset qwen2.5-0.5b \
        --checkpoint /mnt/ckpt/final --set eval.mode=loglikelihood
    ray job submit --working-dir . -- python jobs/eval.py --base-url http://serve:8000/v1

The checkpoint runs in a Ray actor (on a GPU when the cluster has one); an endpoint is
queried from the driver. Outputs go to <run.root>/<run.name>/eval/ (or --out).
"""

from __future__ import annotations

import argparse
import json
import logging

from medbase_ray.config import load_config
from medbase_ray.eval.remote import run_eval_on_ray
from medbase_ray.eval.report import render_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", help="pipeline config YAML")
    parser.add_argument("--preset", help="shipped preset (tiny, qwen2.5-0.5b, cluster-7b)")
    parser.add_argument("--set", "-s", action="append", default=[], dest="overrides")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint to evaluate")
    parser.add_argument("--checkpoint", help="model directory (default: model.name_or_path)")
    parser.add_argument("--mode", choices=["generate", "loglikelihood", "cloze"])
    parser.add_argument("--out", help="output directory (default: <run>/eval)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    overrides = args.overrides + ([f"eval.mode={args.mode}"] if args.mode else [])
    cfg = load_config(args.config, overrides, preset=args.preset)
    report = run_eval_on_ray(cfg, args.base_url, args.checkpoint, args.out)
    print(render_markdown(report))
    print(
        json.dumps({"macro_average": (report["accuracy"]["macro_average"] or {}).get("accuracy")})
    )


if __name__ == "__main__":
    main()
