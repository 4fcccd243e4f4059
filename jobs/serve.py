"""`ray job submit` entrypoint of the serve stage: parse arguments, call the library.

    ray job submit --working-dir . -- python jobs/serve.py /mnt/ckpt/final \
        --preset qwen2.5-0.5b --set serve.host=0.0.0.0

Deploys the OpenAI-compatible app on the cluster's Serve (HTTP proxy on serve.host /
serve.port) and keeps the job alive until it is stopped (`ray job stop`). For a
deployment that outlives any job, use `serve deploy cluster/serve.yaml` instead.
"""

from __future__ import annotations

import argparse
import logging

from medbase_ray.config import load_config
from medbase_ray.serve.app import start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="tiny", help='"tiny" or a model dir')
    parser.add_argument("--config", "-c", help="pipeline config YAML")
    parser.add_argument("--preset", help="shipped preset (tiny, qwen2.5-0.5b, cluster-7b)")
    parser.add_argument("--set", "-s", action="append", default=[], dest="overrides")
    parser.add_argument("--name", default="medbase", help="Serve application name")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    cfg = load_config(args.config, args.overrides, preset=args.preset)
    url = start_server(args.checkpoint, cfg, args.name, cfg.serve.route_prefix, blocking=True)
    print(url)


if __name__ == "__main__":
    main()
