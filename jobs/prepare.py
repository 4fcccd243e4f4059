"""`ray job submit` entrypoint of the prepare stage: `medbase prepare`, the same
options, exit codes and errors (medbase_ray/cli.py).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/prepare.py --preset qwen2.5-0.5b \
        --set model.name_or_path=/mnt/models/Qwen2.5-0.5B \
        --set 'prepare.inputs=["/mnt/data/ApolloCorpus"]' --set run.root=s3://bucket/medbase

Inside a job Ray sets RAY_ADDRESS, so the stage runs on the cluster unchanged. Output:
<run.root>/<run.name>/prepared/ (shards per source, manifest.json, rejects/, _SUCCESS).
"""

import sys

from medbase_ray.cli import app

if __name__ == "__main__":
    app(["prepare", *sys.argv[1:]], prog_name="medbase")
