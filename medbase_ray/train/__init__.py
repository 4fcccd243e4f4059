"""The train stage: supervised fine-tuning with DeepSpeed ZeRO on Ray Train.

loop.py              one worker's training run, top to bottom (no Ray)
recipe.py            Apollo's recipe: param groups, lr schedule, step plan
deepspeed_config.py  the DeepSpeed config from a few knobs and the world size
checkpoint.py        HF model dir + DeepSpeed training state, in one checkpoint
metrics.py           metric sums, reduced over workers; metrics.csv / TensorBoard
data.py              the prepared mixture as a Ray Dataset, fingerprint checked
ray_train.py         the Ray layer: TorchTrainer, shards, checkpoints, progress
run.py               run_train: what `medbase train` and jobs/train.py call

    from medbase_ray.train.run import run_train
"""
