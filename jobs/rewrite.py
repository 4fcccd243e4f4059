"""`ray job submit` entrypoint of the rewrite stage: parse arguments, call the library.

    ray job submit --working-dir . -- python jobs/rewrite.py --preset tiny \
        --base-url http://teacher.internal:8000/v1 --set rewrite.model=Qwen2.5-72B-Instruct \
        --set 'rewrite.tasks=[qa,dialogue]' --set run.root=/mnt/shared/medbase
    ray job submit --working-dir . -- python jobs/rewrite.py --dry-run

The driver reads the teacher's API key from the environment variable
rewrite.api_key_env (OPENAI_API_KEY by default) on the node it runs on (set it there
from your secret store, not in --runtime-env-json, which the job record keeps) and
hands it to the actors. Outputs go to <run.root>/<run.name>/rewrite/, which must be
a directory the driver can write (local or mounted); a re-submitted job resumes.
"""

from __future__ import annotations

import argparse
import json
import logging

from medbase_ray.config import load_config
from medbase_ray.rewrite.pipeline import run_rewrite


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", help="pipeline config YAML")
    parser.add_argument("--preset", help="shipped preset (tiny, qwen2.5-0.5b, cluster-7b)")
    parser.add_argument("--set", "-s", action="append", default=[], dest="overrides")
    parser.add_argument("--input", help="raw text: ApolloCorpus dir, JSONL or Parquet")
    parser.add_argument("--base-url", help="teacher endpoint (OpenAI-compatible /v1 URL)")
    parser.add_argument("--dry-run", action="store_true", help="print requests and ~tokens only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    overrides = list(args.overrides)
    for key, value in (("input", args.input), ("base_url", args.base_url)):
        if value:
            overrides.append(f"rewrite.{key}={json.dumps(value)}")
    cfg = load_config(args.config, overrides, preset=args.preset)
    summary = run_rewrite(cfg, dry_run=args.dry_run)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
