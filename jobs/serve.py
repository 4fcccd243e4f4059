"""`ray job submit` entrypoint of the serve stage: `medbase serve`, the same options,
exit codes and errors (medbase_ray/cli.py).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/serve.py /mnt/ckpt/final \
        --preset qwen2.5-0.5b --set serve.host=0.0.0.0

Deploys the OpenAI-compatible app on the cluster's Serve (HTTP proxy on serve.host /
serve.port) and keeps the job alive until it is stopped (`ray job stop`). For a
deployment that outlives any job, use `serve deploy cluster/serve.yaml` instead.
"""

import sys

from medbase_ray.cli import app

if __name__ == "__main__":
    app(["serve", *sys.argv[1:]], prog_name="medbase")
