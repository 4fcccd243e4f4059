"""`ray job submit` entrypoint of the tune stage: `medbase tune`, the same options,
exit codes and errors (medbase_ray/cli.py).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/tune.py --preset tiny \
        --set tune.num_samples=8 --set tune.trial_max_steps=200
    ray job submit --working-dir . -- python jobs/tune.py --preset cluster-7b \
        --set run.root=s3://bucket/medbase --set tune.max_concurrent_trials=4

Each trial is a Ray Train run on its own worker group (train.num_workers workers), so an
autoscaling cluster grows to max_concurrent_trials x that. Outputs: <run>/tune/.
"""

import sys

from medbase_ray.cli import app

if __name__ == "__main__":
    app(["tune", *sys.argv[1:]], prog_name="medbase")
