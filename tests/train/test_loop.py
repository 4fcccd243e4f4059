"""The worker loop without Ray: packing isolation, batch helpers, resume exactness.

The loop runs here in this process as a world of one (torch.distributed over gloo),
with a list-appending reporter instead of ray.train.report.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medbase_ray.config import dump_config
from medbase_ray.net import free_port
from medbase_ray.train.checkpoint import TRAIN_META_FILE, read_train_meta
from medbase_ray.train.loop import (
    WorkerRun,
    collate_packed,
    count_correct,
    count_label_tokens,
    groups_of,
    train_worker,
)
from medbase_ray.train.recipe import plan_steps


def test_packed_samples_do_not_attend_to_each_other(tiny_dir) -> None:
    """position_ids restarting at 0 and no attention_mask: each sample of a packed row
    gets exactly the logits it gets alone (transformers' block-diagonal mask)."""
    from medbase_ray.models.loading import load_model

    model = load_model(str(tiny_dir)).eval()
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 8000, (1, 11), generator=g)
    b = torch.randint(0, 8000, (1, 7), generator=g)
    row = torch.cat([a, b], dim=1)
    pos = torch.cat([torch.arange(11), torch.arange(7)]).unsqueeze(0)
    with torch.no_grad():
        packed = model(input_ids=row, position_ids=pos, use_cache=False).logits
        alone_a = model(input_ids=a, use_cache=False).logits
        alone_b = model(input_ids=b, use_cache=False).logits
        leaky = model(input_ids=row, use_cache=False).logits  # one long sequence
    torch.testing.assert_close(packed[:, :11], alone_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[:, 11:], alone_b, atol=1e-5, rtol=1e-5)
    assert (leaky[:, 11:] - alone_b).abs().max() > 1e-3  # without the mask, b sees a


def test_collate_and_counts() -> None:
    batch = {
        "input_ids": np.array(
            [np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int32)], dtype=object
        ),
        "labels": np.array([np.array([-100, 1, 2, -100], dtype=np.int32)] * 2, dtype=object),
        "position_ids": np.array([np.array([0, 1, 0, 1], dtype=np.int32)] * 2, dtype=object),
        "n_real_tokens": np.array([4, 3], dtype=np.int32),
        "source": np.array(["a", "b"]),
    }
    t = collate_packed(batch)
    assert set(t) == {"input_ids", "labels", "position_ids", "n_real_tokens"}
    assert t["input_ids"].shape == (2, 4) and t["input_ids"].dtype == torch.int64
    assert count_label_tokens(t["labels"]) == 4  # shifted: positions 1, 2 of each row
    logits = torch.zeros(2, 4, 5)
    logits[0, 0, 1] = 1  # predicts label 1 at position 1: hit
    logits[1, 1, 3] = 1  # predicts 3 where the label is 2: miss
    assert count_correct(logits, t["labels"]) == 1
    assert [len(g) for g in groups_of(iter(range(7)), 3)] == [3, 3]  # short tail dropped


@pytest.fixture(scope="module")
def world_of_one():
    """torch.distributed in this process, world size 1 (what DeepSpeed needs)."""
    import os

    import torch.distributed as dist

    # What a launcher (torchrun, Ray Train) sets; DeepSpeed checks LOCAL_RANK.
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)
    if not dist.is_initialized():
        port = free_port()
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield


def _batches(rows, micro: int):
    """Micro-batches of `rows` as Ray Data hands them to collate_packed: each epoch in
    its own seeded order (as the shuffle buffer gives), the same for the same epoch."""

    def batches(epoch: int):
        order = np.random.default_rng(epoch).permutation(rows.num_rows)
        for i in range(0, rows.num_rows - micro + 1, micro):
            part = rows.take(order[i : i + micro])
            yield collate_packed(
                {
                    c: part.column(c).to_numpy()
                    for c in ("input_ids", "labels", "position_ids", "n_real_tokens")
                }
            )

    return batches


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


def test_resume_continues_exactly(world_of_one, local_rows, make_cfg, tmp_path: Path) -> None:
    """Stopped after step 2 and resumed from its checkpoint, the loop ends with the
    weights of an uninterrupted run: same optimizer state, schedule and data position,
    into the next epoch (read in its own order)."""
    cfg = make_cfg(tmp_path, "train.max_steps=6", "train.save_steps=3", "train.zero_stage=1")
    rows = local_rows.slice(0, 8)  # 4 micro-batches of 2: an epoch is 4 steps
    plan = plan_steps(rows.num_rows, 1, cfg.train)
    run = WorkerRun(cfg.train, "tiny", "apollo", "auto", False, plan, dump_config(cfg))
    saved: dict[str, list] = {"a": [], "b": []}

    def reporter(key: str):
        def report(metrics, ckpt_dir):
            saved[key].append(metrics)
            if ckpt_dir:
                shutil.copytree(ckpt_dir, tmp_path / key / Path(ckpt_dir).name)

        return report

    train_worker(run, _batches(rows, 2), None, reporter("a"))
    assert [m["step"] for m in saved["a"]] == [1, 2, 3, 4, 5, 6]
    step3 = tmp_path / "a" / "checkpoint_step_000003"
    assert read_train_meta(step3)["micro_batches_in_epoch"] == 3
    assert (step3 / TRAIN_META_FILE).exists() and (step3 / "tokenizer.json").exists()

    out = train_worker(run, _batches(rows, 2), None, reporter("b"), restore_dir=str(step3))
    assert out["step"] == 6 and out["epoch"] == 1 and [m["step"] for m in saved["b"]] == [4, 5, 6]
    for x, y in zip(saved["b"], saved["a"][3:], strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6)
    a, b = (
        _weights(tmp_path / "a" / "checkpoint_step_000006"),
        _weights(tmp_path / "b" / "checkpoint_step_000006"),
    )
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)


def test_head_on_label_tokens_trains_what_full_logits_train(
    world_of_one, local_rows, make_cfg, tmp_path: Path
) -> None:
    """The output head run only where a label follows gives the loss, token accuracy,
    gradient norm, dev figures and weights of the model's own loss on full logits."""
    rows = local_rows.slice(0, 8)
    runs = {}
    for on_labels in (True, False):
        cfg = make_cfg(tmp_path / str(on_labels), "train.max_steps=3", "train.zero_stage=1",
                       "train.log_steps=1", "train.probe_tokens=16",
                       f"train.head_on_label_tokens={on_labels}")  # fmt: skip
        plan = plan_steps(rows.num_rows, 1, cfg.train)
        run = WorkerRun(cfg.train, "tiny", "apollo", "auto", False, plan, dump_config(cfg))
        metrics: list[dict] = []
        dev = functools.partial(_batches(rows.slice(0, 4), 2), 0)
        report = functools.partial(lambda sink, m, _ckpt: sink.append(m), metrics)
        out = train_worker(run, _batches(rows, 2), dev, report)
        runs[on_labels] = (metrics, out)
    (sel, sel_out), (full, full_out) = runs[True], runs[False]
    assert [m["step"] for m in sel] == [1, 2, 3] and sel[-1]["loss"] < sel[0]["loss"]
    for a, b in zip(sel, full, strict=True):
        for key in ("loss", "grad_norm", "dev_loss"):
            if key in a or key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-5), (a["step"], key)
        for key in ("token_accuracy", "dev_token_accuracy"):  # one argmax tie may flip
            if key in a or key in b:
                assert a[key] == pytest.approx(b[key], abs=2.5e-3), (a["step"], key)
    assert "dev_loss" in sel[-1] and sel[-1]["token_accuracy"] > 0
    # The trained weights: the logits of the exported probe agree.
    probe_sel, probe_full = (torch.tensor(o["probe"]["logits"]) for o in (sel_out, full_out))
    assert probe_sel.shape == probe_full.shape == (1, 16, probe_sel.shape[-1])
    torch.testing.assert_close(probe_sel, probe_full, atol=1e-4, rtol=1e-4)
