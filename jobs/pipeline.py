"""`ray job submit` entrypoint of the whole pipeline: `medbase pipeline`, the same
options, exit codes and errors (medbase_ray/cli.py).

    export RAY_AUTH_MODE=token    # Ray >= 2.60: send the cluster's token (~/.ray/auth_token
                                  # or RAY_AUTH_TOKEN)
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/pipeline.py --preset tiny
    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/pipeline.py --preset cluster-7b \
        --set model.name_or_path=/mnt/models/Qwen2-7B --set run.root=s3://YOUR-BUCKET/medbase

Outputs go to <run.root>/<run.name>/ (a local root is a path on the cluster's nodes).
Each stage skips complete outputs, so re-submitting the same command resumes. A failed
job exits 1 and its last log line names the stage and the reason.
"""

import sys

from medbase_ray.cli import app

if __name__ == "__main__":
    app(["pipeline", *sys.argv[1:]], prog_name="medbase")
