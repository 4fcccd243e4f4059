"""`run_train` on a real local Ray: 2 CPU workers, real DeepSpeed ZeRO, the tiny model.

One uninterrupted ZeRO-1 run is the reference of several tests: a plain PyTorch loop
over the same global batches, a run stopped and resumed, and a ZeRO-2 run whose worker
is killed must all agree with it. ZeRO-3 runs from a prepared directory.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from medbase_ray.corpus.languages import LANGUAGES
from medbase_ray.eval.runner import run_eval
from medbase_ray.models.checkpoint_info import SettingsConflict, read_checkpoint_config
from medbase_ray.prepare.manifest import read_manifest
from medbase_ray.train.checkpoint import TRAIN_META_FILE, TRAINING_STATE_DIR, read_train_meta
from medbase_ray.train.metrics import read_metrics
from medbase_ray.train.run import TrainRunError, run_train

pytestmark = pytest.mark.integration

STEPS = 12  # optimizer steps of the reference run
MICRO = 2  # rows per micro-batch and worker: a global batch is 4 rows


def micro_blocks(ray_local, rows: pa.Table):
    """A Dataset whose blocks are micro-batches, in order. Ray's split hands blocks to
    the worker with the fewest rows so far, so global batch k is rows [4k, 4k + 4)."""
    import ray

    return ray.data.from_arrow([rows.slice(i, MICRO) for i in range(0, rows.num_rows, MICRO)])


@pytest.fixture(scope="module")
def reference(ray_local, packed_rows, make_cfg, tmp_path_factory):
    """The uninterrupted 2-worker ZeRO-1 run (and its inputs, for the other runs)."""
    import ray

    tmp = tmp_path_factory.mktemp("zero1")
    train_rows = packed_rows.slice(0, STEPS * 2 * MICRO)
    # The mixture's order every epoch (no shuffle buffer): the plain loop below replays it.
    overrides = (
        f"train.max_steps={STEPS}", "train.save_steps=4", "train.zero_stage=1",
        "train.shuffle_buffer_rows=0",
    )  # fmt: skip
    cfg = make_cfg(tmp, *overrides, "train.probe_tokens=8")
    dev = ray.data.from_arrow(packed_rows.slice(STEPS * 2 * MICRO, 8))
    out = run_train(cfg, dataset=micro_blocks(ray_local, train_rows), dev_dataset=dev)
    return {"out": out, "rows": train_rows, "overrides": overrides, "cfg": cfg}


def weights(ckpt: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(ckpt) / "model.safetensors"))


def assert_same_weights(a: str, b: str) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-4, msg=name)


def test_zero1_loss_falls_and_run_dir_is_complete(reference) -> None:
    out = reference["out"]
    losses = [m["loss"] for m in out["metrics"]]
    assert [m["step"] for m in out["metrics"]] == list(range(1, STEPS + 1))
    assert losses[-1] < losses[0] - 1.0, losses  # from ln(vocab) ~ 9.0
    assert out["steps"] == STEPS and out["final"]["step"] == STEPS
    assert 0 < out["final"]["dev_loss"] < losses[0]
    assert all(m["real_tokens_per_s"] > 0 and m["grad_norm"] > 0 for m in out["metrics"])
    run_dir = Path(out["run_dir"])
    # keep_last=2 of the checkpoints at steps 4, 8, 12; metrics.csv and TensorBoard beside.
    kept = sorted(p.name for p in run_dir.glob("checkpoint_step_*"))
    assert kept == ["checkpoint_step_000008", "checkpoint_step_000012"]
    assert (run_dir / "_SUCCESS").exists() and (run_dir / "metrics.csv").exists()
    # final/: the last checkpoint as a plain model directory, the returned path.
    assert Path(out["checkpoint"]) == run_dir / "final"
    assert (run_dir / "final" / "model.safetensors").exists()
    assert not (run_dir / "final" / "training_state").exists()
    assert (run_dir / "checkpoint_step_000012" / "training_state").is_dir()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_two_worker_zero1_matches_a_plain_pytorch_loop(reference, tiny_dir) -> None:
    """The same global batches through one process, plain PyTorch: same losses."""
    from transformers import AutoModelForCausalLM, get_scheduler

    cfg, rows = reference["cfg"].train, reference["rows"]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps,
    )  # fmt: skip
    sched = get_scheduler("cosine", opt, num_warmup_steps=2, num_training_steps=STEPS)
    losses = []
    for k in range(5):
        batch = rows.slice(4 * k, 4)
        ids, labels, pos = (
            torch.tensor(batch.column(c).to_pylist())
            for c in ("input_ids", "labels", "position_ids")
        )
        logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        # Mean over every label token of the global batch (labels shifted by one).
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    ray_losses = [m["loss"] for m in reference["out"]["metrics"][:5]]
    for mine, theirs in zip(ray_losses, losses, strict=True):
        assert abs(mine - theirs) / theirs < 1e-3, (ray_losses, losses)


def test_final_checkpoint_reloads_with_the_same_logits(reference) -> None:
    check_reload(reference["out"])


def check_reload(out: dict) -> None:
    """from_pretrained(final checkpoint) gives the logits the trained model gave."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medbase_ray.models.chat import APOLLO_CHAT_TEMPLATE

    ckpt = Path(out["checkpoint"])
    model = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    probe = out["probe"]
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor(probe["input_ids"]),
            position_ids=torch.tensor(probe["position_ids"]),
            use_cache=False,
        ).logits
    torch.testing.assert_close(logits, torch.tensor(probe["logits"]), atol=1e-5, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    assert tokenizer.chat_template == APOLLO_CHAT_TEMPLATE
    # What serve and eval read back: the chat format resolved (the config set none).
    saved = read_checkpoint_config(ckpt)
    assert saved["model"]["chat_format"] == "apollo"
    # final/ is the last checkpoint without what only resuming reads.
    assert read_train_meta(out["last_checkpoint"])["step"] == out["steps"]
    assert not (ckpt / TRAIN_META_FILE).exists() and not (ckpt / TRAINING_STATE_DIR).exists()


def test_zero3_runs_from_prepared_data(ray_local, prepared_dir, make_cfg, tmp_path) -> None:
    """ZeRO-3 from the prepared directory (fingerprint checked), streaming with half a
    CPU per worker so that Ray Data's read tasks get the rest, under a `file://` run root
    (a re-run skips it); the benchmark's dev split is scored at the end (the weights
    gathered for the eval stage), and the eval stage scores final/ the same."""
    cfg = make_cfg(
        tmp_path,
        f"run.root=file://{tmp_path}",
        "train.max_steps=8",
        "train.lr_scheduler=constant",
        "train.zero_stage=3",
        "train.probe_tokens=8",
        "train.resources_per_worker={CPU: 0.5}",
        "train.dev_benchmark=true",
    )
    out = run_train(cfg, data_dir=prepared_dir)
    run_dir = tmp_path / "t" / "train"
    assert out["run_dir"] == f"file://{run_dir}" and (run_dir / "_SUCCESS").exists()
    assert Path(out["checkpoint"]) == run_dir / "final"
    losses = [m["loss"] for m in out["metrics"]]
    assert len(losses) == 8 and losses[-1] < losses[0] - 1.0, losses
    check_reload(out)  # the 16-bit weights gathered from both workers
    final = out["final"]
    assert "dev_accuracy" not in out["metrics"][0]  # only at eval points (here: the end)

    # The eval stage, in-process on final/, scoring the dev split without shots (what
    # dev_benchmark scores): the same figures.
    dev_cfg = cfg.model_copy(deep=True)
    dev_cfg.eval.split, dev_cfg.eval.dev_split = cfg.eval.dev_split, cfg.eval.split
    dev_cfg.eval.k_shot = dev_cfg.eval.bootstrap_samples = 0
    report = run_eval(dev_cfg, model_path=out["checkpoint"], out_dir=str(tmp_path / "dev-eval"))
    accuracy = report["accuracy"]
    assert set(accuracy["languages"]) == set(LANGUAGES)
    for lang in LANGUAGES:
        assert final[f"dev_accuracy_{lang}"] == accuracy["languages"][lang]["accuracy"], lang
    assert final["dev_accuracy"] == pytest.approx(accuracy["macro_average"]["accuracy"], abs=1e-12)

    # What it trained on: each language's share of the mixture is its share of the
    # manifest's tokens, each source repeated its mixture.epochs.
    manifest = read_manifest(prepared_dir)
    epochs = cfg.mixture.epochs
    tokens = dict.fromkeys(LANGUAGES, 0.0)
    for key, source in manifest["sources"].items():
        repeat = epochs.get(key, epochs.get(source["source"], 1.0))
        tokens[source["language"]] += source["real_tokens"] * repeat
    shares = out["mixture"]["language_shares"]
    assert set(shares) == set(LANGUAGES)
    for lang in LANGUAGES:
        assert shares[lang] == pytest.approx(tokens[lang] / sum(tokens.values()), abs=0.02), lang

    again = run_train(cfg, data_dir=prepared_dir)  # complete: skipped, same answer
    assert again["skipped"] and again["checkpoint"] == out["checkpoint"]
    assert again["final"] == final and again["metrics"] == out["metrics"]


def test_cli_refuses_data_prepared_for_another_tokenizer(prepared_dir, tiny_dir, tmp_path) -> None:
    """`medbase train --data DIR` with a model whose tokenizer differs: exit 1 with the
    reason, before any training starts (the CLI app in-process: no second interpreter
    importing torch again)."""
    import shutil

    from transformers import AutoTokenizer
    from typer.testing import CliRunner

    from medbase_ray.cli import app

    other = tmp_path / "other-model"
    shutil.copytree(tiny_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(str(other))
    tokenizer.add_tokens(["<new-token>"])
    tokenizer.save_pretrained(str(other))
    args = ["--data", prepared_dir, "--set", f"run.root={tmp_path}"]
    result = CliRunner().invoke(app, ["train", *args, "--set", f"model.name_or_path={other}"])
    assert result.exit_code == 1, result.output
    assert "another tokenizer" in result.stderr and prepared_dir in result.stderr
    assert not (tmp_path / "tiny" / "train").exists()


def kill_a_worker_after(run_dir: Path, step: int, timeout_s: float = 300) -> int:
    """SIGKILL one Ray Train worker process once `step` is reported and checkpointed."""
    import ray
    from ray.util.state import list_actors

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = [m["step"] for m in read_metrics(run_dir / "metrics.csv")]
        if done and max(done) >= step:
            break
        time.sleep(0.1)
    else:
        raise TimeoutError(f"step {step} was not reported within {timeout_s} s")
    workers = list_actors(
        address=ray.get_runtime_context().gcs_address,  # this session's Ray, not another's
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
    )
    pid = workers[0].pid
    os.kill(pid, signal.SIGKILL)
    return pid


def run_in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target():
        try:
            box["out"] = fn(*args, **kwargs)
        except Exception as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_killed_worker_restarts_from_checkpoint(reference, ray_local, make_cfg, tmp_path) -> None:
    """max_failures=1: a worker SIGKILLed mid-run; the run restores the last checkpoint,
    finishes the planned steps, and ends where the uninterrupted run ended. This is the
    ZeRO-2 run: sharding gradients changes no number (fp32, 2 workers), so it must end
    with the uninterrupted ZeRO-1 run's weights, and its loss falls."""
    cfg = make_cfg(tmp_path, *reference["overrides"], "train.max_failures=1", "train.zero_stage=2")
    data = micro_blocks(ray_local, reference["rows"])
    thread, box = run_in_thread(run_train, cfg, dataset=data)
    kill_a_worker_after(tmp_path / "t" / "train", step=4)
    thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    out = box["out"]
    assert out["steps"] == STEPS and out["metrics"][-1]["step"] == STEPS
    assert out["metrics"][-1]["loss"] < out["metrics"][0]["loss"] - 1.0
    # Restored from a checkpoint (step 4 or later), not from scratch: the steps up to it
    # were reported once (those after it may have been reported before the kill too).
    csv_lines = (tmp_path / "t" / "train" / "metrics.csv").read_text().splitlines()[1:]
    reported = [int(line.split(",")[0]) for line in csv_lines]
    assert reported.count(1) == reported.count(4) == 1, reported
    assert_same_weights(out["checkpoint"], reference["out"]["checkpoint"])


def test_failed_run_keeps_its_checkpoint_and_resumes_exactly(
    reference, ray_local, make_cfg, tmp_path
) -> None:
    """max_failures=0: the killed run stops with a message naming its last good
    checkpoint; --resume continues from it and ends with the uninterrupted weights."""
    cfg = make_cfg(tmp_path, *reference["overrides"])
    data = micro_blocks(ray_local, reference["rows"])
    thread, box = run_in_thread(run_train, cfg, dataset=data)
    kill_a_worker_after(tmp_path / "t" / "train", step=4)
    thread.join(timeout=600)
    error = box.get("error")
    assert isinstance(error, TrainRunError), box
    assert "checkpoint_step_" in str(error) and "--resume" in str(error)
    with pytest.raises(TrainRunError, match="pass --resume"):
        run_train(cfg, dataset=data)  # a fresh run would overwrite it: refused
    template = cfg.model_copy(
        update={"model": cfg.model.model_copy(update={"chat_format": "template"})}
    )
    with pytest.raises(SettingsConflict, match="is 'template' but .* trained with 'apollo'"):
        run_train(template, dataset=data, resume=True)  # not the checkpoint's format

    out = run_train(cfg, dataset=data, resume=True)
    steps = [m["step"] for m in out["metrics"]]
    assert steps[-1] == STEPS and out["steps"] == STEPS
    assert_same_weights(out["checkpoint"], reference["out"]["checkpoint"])
