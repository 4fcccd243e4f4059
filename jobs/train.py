"""`ray job submit` entrypoint of the train stage: `medbase train`, the same options,
exit codes and errors (medbase_ray/cli.py).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/train.py --preset cluster-7b \
        --set model.name_or_path=/mnt/models/Qwen2-7B --set run.root=s3://bucket/medbase
    ray job submit --working-dir . -- python jobs/train.py --preset tiny --resume

Ray sets RAY_ADDRESS inside a job, so the same run_train joins the cluster. Checkpoints
go to train.storage_path (default <run.root>/<run.name>/train); the last line printed is
the final checkpoint.
"""

import sys

from medbase_ray.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="medbase")
