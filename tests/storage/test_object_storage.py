"""The pipeline's stages on object storage: `run.root=s3://...` against a real
S3-compatible server on loopback (moto's standalone server, `moto[server]`).

Credentials and the endpoint come from the environment, as on a cluster: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION and AWS_ENDPOINT_URL (which pyarrow's
S3FileSystem, hence Ray Train and Ray Data, read). The stages run in a child process
(tests/storage/stages_on_s3.py) with its own local Ray started in that environment: the
session's Ray (tests/conftest.py) was started without it, and its workers could not reach
the bucket.

- rewrite -> prepare -> train -> eval write every output to the bucket, `_SUCCESS` last;
- a re-run skips every complete stage and writes no object;
- a train run killed after its first checkpoint resumes from it (`--resume`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medbase_ray.net import free_port

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("stages_on_s3.py")
BUCKET = "medbase-test"
ROOT = f"s3://{BUCKET}/runs"
RUN = "s3run"


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free loopback port, a bucket, and the environment a
    process needs to use it. Yields (env, boto3 client)."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "AWS_ACCESS_KEY_ID": "medbase-test",
        "AWS_SECRET_ACCESS_KEY": "medbase-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        # The child's Ray: token auth (Ray 2.60's default when a token exists) with a
        # token of its own, whatever ~/.ray holds.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=BUCKET)
    yield env, client
    server.stop()


def objects(client, prefix: str) -> dict[str, tuple[str, str]]:
    """key -> (ETag, LastModified) of every object under `prefix`."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["ETag"], str(obj["LastModified"]))
    return found


def checkpoint_steps(keys) -> list[int]:
    """The steps of the checkpoints any of `keys` belongs to, sorted."""
    return sorted(
        {int(k.split("checkpoint_step_")[1][:6]) for k in keys if "checkpoint_step_" in k}
    )


def start_driver(env: dict, result: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *args[:1], ROOT, str(result), *args[1:]],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: killed as a whole
    )  # fmt: skip


def run_driver(env: dict, result: Path, *args: str, timeout_s: int = 900) -> dict:
    proc = start_driver(env, result, *args)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, output[-8000:]
    return json.loads(result.read_text())


@pytest.fixture(scope="module")
def first_run(s3, tmp_path_factory) -> dict:
    env, client = s3
    tmp = tmp_path_factory.mktemp("s3-stages")
    return run_driver(env, tmp / "first.json", "stages")


def test_stages_write_their_outputs_to_the_bucket(s3, first_run: dict) -> None:
    _, client = s3
    keys = objects(client, f"runs/{RUN}/")
    for stage in ("rewrite", "prepared", "train", "eval"):
        assert f"runs/{RUN}/{stage}/_SUCCESS" in keys, stage
        assert f"runs/{RUN}/{stage}/config.yaml" in keys, stage
    assert first_run["prepare"]["output_dir"] == f"{ROOT}/{RUN}/prepared"
    assert first_run["prepare"]["rows"] > 0
    assert any(k.startswith(f"runs/{RUN}/prepared/") and k.endswith(".parquet") for k in keys)
    assert f"runs/{RUN}/prepared/manifest.json" in keys
    # The checkpoint Ray Train persisted, and the exported model, live in the bucket.
    train = first_run["train"]
    assert train["run_dir"] == f"{ROOT}/{RUN}/train" and train["steps"] == 4
    assert f"runs/{RUN}/train/final/model.safetensors" in keys
    assert any("/train/checkpoint_step_000004/" in k for k in keys)
    assert f"runs/{RUN}/train/metrics.csv" in keys
    assert len(train["loss"]) == 4 and train["loss"][-1] < train["loss"][0]
    assert f"runs/{RUN}/eval/report.json" in keys
    assert 0 <= first_run["eval"]["accuracy"]["accuracy"] <= 1
    rewrite = first_run["rewrite"]
    assert rewrite["in"] == rewrite["out"] + rewrite["rejected"] > 0


def test_a_rerun_skips_every_complete_stage_and_writes_nothing(
    s3, first_run: dict, tmp_path: Path
) -> None:
    env, client = s3
    before = objects(client, "runs/")
    again = run_driver(env, tmp_path / "again.json", "stages")
    assert again["rewrite"]["was_complete"] is True
    assert again["rewrite"]["in"] == first_run["rewrite"]["in"]
    assert again["prepare"]["skipped"] is True
    assert again["train"]["skipped"] is True
    assert again["eval"]["was_complete"] is True
    assert again["eval"]["accuracy"] == first_run["eval"]["accuracy"]
    assert objects(client, "runs/") == before  # not one object written again


def test_a_killed_train_run_resumes_from_its_last_checkpoint(
    s3, first_run: dict, tmp_path: Path
) -> None:
    """(first_run: the prepared data it trains on.)"""
    env, client = s3
    prefix = f"runs/{RUN}/train-resume/"
    proc = start_driver(env, tmp_path / "killed.json", "train")
    deadline = time.monotonic() + 600
    try:
        # Killed once the second checkpoint starts to appear: the first is then whole and
        # registered by Ray Train (an object of a checkpoint still uploading is not).
        while not any(step >= 4 for step in checkpoint_steps(objects(client, prefix))):
            assert proc.poll() is None, proc.stdout.read()[-8000:]
            assert time.monotonic() < deadline, "no checkpoint reached the bucket"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # midway: the driver and its local Ray
        proc.wait()
    keys = objects(client, prefix)
    assert f"{prefix}_SUCCESS" not in keys
    saved = checkpoint_steps(keys)
    resumed = run_driver(env, tmp_path / "resumed.json", "train", "--resume")
    assert resumed["steps"] == 8
    # The resumed run starts after a checkpoint of the killed one, not from step 1.
    first = resumed["reported_steps"][0]
    assert first - 1 in saved and first > 1, (saved, resumed["reported_steps"])
    assert resumed["reported_steps"][-1] == 8
    assert f"{prefix}_SUCCESS" in objects(client, prefix)
