"""Driver of tests/storage/test_object_storage.py: the tiny pipeline's stages on an
s3:// run root, in a process of its own (its own local Ray, started with the S3
credentials and endpoint in its environment, as a user's would be).

    AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
        python tests/storage/stages_on_s3.py stages s3://bucket/runs RESULT.json
    ... train s3://bucket/runs RESULT.json [--resume]

stages: rewrite (the tiny model served by Ray Serve as the teacher) -> prepare -> train
-> eval (in-process) of the trained checkpoint, each stage called as `medbase <stage>`
calls it; RESULT.json gets each stage's summary. train: a longer run with checkpoints
in its own directory (the test kills it midway, then runs it again with --resume).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from medbase_ray.config import PipelineConfig, load_config
from medbase_ray.corpus.readers import sample_dir
from medbase_ray.corpus.rejects import AllRejected
from medbase_ray.demo import write_rewrite_sample
from medbase_ray.net import free_port
from medbase_ray.ray_runtime import init_ray
from medbase_ray.stage import StageOutput

RUN = "s3run"
TRAIN_STEPS = 4  # the stages run
RESUME_STEPS, RESUME_SAVE_STEPS = 8, 2  # the run that is killed and resumed


def stage_config(root: str, *overrides: str) -> PipelineConfig:
    return load_config(
        preset="tiny",
        overrides=[
            f"run.root={root}",
            f"run.name={RUN}",
            f"serve.port={free_port()}",  # the teacher's: never a port another test holds
            "prepare.seq_len=128",
            "rewrite.max_tokens=16",
            f"rewrite.input={write_rewrite_sample(1)}",  # one passage per language
            f"train.max_steps={TRAIN_STEPS}",
            "train.log_steps=1",
            "eval.mode=cloze",
            "eval.k_shot=0",
            *overrides,
        ],
    )


def start_local_ray():
    """A local Ray of 2 CPUs in this process (what `init_ray` starts), with every agent
    port given: a raylet waits only 15 s (Ray 2.60, not configurable) for an agent to
    report a port it chose itself, then aborts, and a busy machine misses that. Its
    processes get this process's environment: the S3 credentials and endpoint."""
    from ray.cluster_utils import Cluster
    from ray.util import get_node_ip_address

    ports = ("dashboard_port", "dashboard_agent_listen_port", "metrics_agent_port",
             "metrics_export_port", "runtime_env_agent_port")  # fmt: skip
    for attempt in range(3):  # Ray gives a node 30 s to register: a busy machine can miss it
        head = {"num_cpus": 2, "gcs_server_port": free_port()} | {p: free_port() for p in ports}
        # Calls of Ray's state API inside the workers (Ray Train, Ray Data) would otherwise
        # join "the latest cluster" of the machine, maybe another user's.
        os.environ["RAY_ADDRESS"] = f"{get_node_ip_address()}:{head['gcs_server_port']}"
        try:
            cluster = Cluster(initialize_head=True, head_node_args=head)
            break
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
    init_ray(address=cluster.address)
    return cluster


def rewrite(cfg: PipelineConfig) -> dict[str, Any]:
    """The teacher is the tiny model behind Ray Serve (as in `medbase demo`), started
    only when there is something to rewrite."""
    from ray import serve

    from medbase_ray.rewrite.pipeline import run_rewrite
    from medbase_ray.serve.app import start_server

    was_complete = StageOutput.of(cfg.run, "rewrite").is_complete()
    if not was_complete:
        cfg.rewrite.base_url = start_server("tiny", cfg, name="teacher", route_prefix="/teacher")
    try:
        summary = run_rewrite(cfg)
    except AllRejected:  # the untrained teacher writes nothing usable: the stage is done
        summary = StageOutput.of(cfg.run, "rewrite").summary()
    finally:
        if not was_complete:
            serve.delete("teacher")
    return summary | {"was_complete": was_complete}


def stages(root: str) -> dict[str, Any]:
    from medbase_ray.eval.runner import run_eval
    from medbase_ray.prepare.pipeline import run_prepare
    from medbase_ray.train.run import run_train

    cfg = stage_config(root)
    out: dict[str, Any] = {"rewrite": rewrite(cfg)}
    if out["rewrite"]["out"] > 0:  # as the pipeline does: the sample plus what was written
        cfg.prepare.inputs = [str(sample_dir() / "apollo"), out["rewrite"]["conversations_dir"]]
    prepared = run_prepare(cfg)
    out["prepare"] = {"skipped": prepared["skipped"], "output_dir": prepared["output_dir"],
                      "rows": prepared["manifest"]["totals"]["rows"]}  # fmt: skip
    trained = run_train(cfg)
    out["train"] = {k: trained.get(k) for k in ("checkpoint", "run_dir", "steps", "skipped")}
    out["train"]["loss"] = [m["loss"] for m in trained["metrics"]]
    before = StageOutput.of(cfg.run, "eval").is_complete()
    report = run_eval(cfg, model_path=trained["checkpoint"])
    out["eval"] = {"was_complete": before, "accuracy": report["accuracy"]["macro_average"]}
    return out


def train(root: str, resume: bool) -> dict[str, Any]:
    from medbase_ray.train.run import run_train

    cfg = stage_config(
        root,
        f"train.storage_path={root}/{RUN}/train-resume",
        f"train.max_steps={RESUME_STEPS}",
        f"train.save_steps={RESUME_SAVE_STEPS}",
        "train.keep_last=4",
    )
    trained = run_train(cfg, resume=resume)
    return {"steps": trained["steps"], "reported_steps": [m["step"] for m in trained["metrics"]],
            "checkpoint": trained["checkpoint"], "run_dir": trained["run_dir"]}  # fmt: skip


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    mode, root, result = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    import ray

    cluster = start_local_ray()
    try:
        out = stages(root) if mode == "stages" else train(root, resume="--resume" in sys.argv)
        result.write_text(json.dumps(out, indent=2, default=str))
    finally:  # stopped here, not by exit hooks (which ended the process with status 1)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
