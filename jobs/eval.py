"""`ray job submit` entrypoint of the eval stage: `medbase eval`, the same options,
exit codes and errors (medbase_ray/cli.py).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/eval.py --preset qwen2.5-0.5b \
        --checkpoint /mnt/ckpt/final --mode loglikelihood
    ray job submit --working-dir . -- python jobs/eval.py --base-url http://serve:8000/v1

Inside a job (RAY_ADDRESS set) the checkpoint runs in a Ray actor, on a GPU when the
cluster has one; an endpoint is queried from the driver. Outputs go to
<run.root>/<run.name>/eval/ (or --out).
"""

import sys

from medbase_ray.cli import app

if __name__ == "__main__":
    app(["eval", *sys.argv[1:]], prog_name="medbase")
