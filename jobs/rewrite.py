"""`ray job submit` entrypoint of the rewrite stage: `medbase rewrite`, the same
options, exit codes and errors (medbase_ray/cli.py).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/rewrite.py --preset tiny \
        --base-url http://teacher.internal:8000/v1 --model Qwen2.5-72B-Instruct \
        --task qa --task dialogue --set run.root=s3://bucket/medbase
    ray job submit --working-dir . -- python jobs/rewrite.py --dry-run

The driver reads the teacher's API key from the environment variable
rewrite.api_key_env (OPENAI_API_KEY by default) on the node it runs on (set it there
from your secret store, not in --runtime-env-json, which the job record keeps) and hands
it to the actors. Outputs go to <run.root>/<run.name>/rewrite/; a re-submitted job resumes.
"""

import sys

from medbase_ray.cli import app

if __name__ == "__main__":
    app(["rewrite", *sys.argv[1:]], prog_name="medbase")
