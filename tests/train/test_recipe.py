"""The pure pieces of the train stage: DeepSpeed config, step plan, recipe, config checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medbase_ray.models.loading import resolve_dtype
from medbase_ray.train.config import TrainConfig
from medbase_ray.train.deepspeed_config import build_deepspeed_config
from medbase_ray.train.recipe import build_lr_scheduler, param_groups, plan_steps


def test_deepspeed_batch_sizes_agree_with_world_size() -> None:
    train = TrainConfig(micro_batch_size=3, grad_accum_steps=5)
    for world in (1, 2, 16):
        ds = build_deepspeed_config(train, world, on_gpu=False)
        assert ds["train_batch_size"] == 3 * 5 * world
        assert ds["train_micro_batch_size_per_gpu"] == 3
        assert ds["gradient_accumulation_steps"] == 5
    with pytest.raises(ValueError, match="world_size"):
        build_deepspeed_config(train, 0, on_gpu=False)


def test_deepspeed_config_follows_the_knobs() -> None:
    train = TrainConfig(
        zero_stage=3, offload_optimizer=True, offload_params=True, clip_grad_norm=0.5
    )
    ds = build_deepspeed_config(train, 2, on_gpu=True)
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu"
    assert ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]  # auto on GPU: bf16
    params = ds["optimizer"]["params"]
    assert ds["optimizer"]["type"] == "AdamW"
    assert params["lr"] == train.lr and params["torch_adam"] is True

    cpu = build_deepspeed_config(TrainConfig(zero_stage=1, torch_adam=False), 2, on_gpu=False)
    assert not cpu["bf16"]["enabled"] and not cpu["fp16"]["enabled"]  # auto on CPU: fp32
    assert "torch_adam" not in cpu["optimizer"]["params"]
    assert "offload_optimizer" not in cpu["zero_optimization"]


def test_precision_follows_model_dtype() -> None:
    """model.dtype is the one precision setting; DeepSpeed's modes follow from it."""
    assert resolve_dtype("auto", on_gpu=True) == "bfloat16"
    assert resolve_dtype("auto", on_gpu=True, gpu_has_bf16=False) == "float32"
    assert resolve_dtype("auto", on_gpu=False) == "float32"
    assert resolve_dtype("bfloat16", on_gpu=False) == "bfloat16"
    train = TrainConfig()
    modes = {
        dtype: (ds["bf16"]["enabled"], ds["fp16"]["enabled"])
        for dtype in ("float32", "bfloat16", "float16")
        for ds in [build_deepspeed_config(train, 2, on_gpu=True, dtype=dtype)]
    }
    assert modes == {
        "float32": (False, False), "bfloat16": (True, False), "float16": (False, True)
    }  # fmt: skip
    with pytest.raises(ValueError, match="float16 needs a GPU"):
        build_deepspeed_config(train, 2, on_gpu=False, dtype="float16")
    with pytest.raises(ValidationError, match="precision"):  # the old setting is gone
        TrainConfig(precision="bf16")


def test_apollo_recipe_is_the_default() -> None:
    t = TrainConfig()
    assert (t.lr, t.weight_decay, t.warmup_ratio, t.clip_grad_norm) == (1e-5, 0.1, 0.03, 1.0)
    assert t.lr_scheduler == "cosine"


def test_config_rejects_inconsistent_offload() -> None:
    with pytest.raises(ValidationError, match="offload_params needs zero_stage 3"):
        TrainConfig(zero_stage=2, offload_params=True)
    with pytest.raises(ValidationError, match="offload_optimizer needs"):
        TrainConfig(zero_stage=0, offload_optimizer=True)


def test_step_plan() -> None:
    train = TrainConfig(micro_batch_size=2, grad_accum_steps=2, epochs=1.5)
    plan = plan_steps(101, 2, train)  # 50 rows a worker, 25 micro-batches, 12 steps
    assert (plan.rows_per_worker, plan.micro_batches_per_epoch) == (50, 25)
    assert plan.steps_per_epoch == 12
    assert plan.total_steps == 18  # ceil(1.5 * 12)
    assert plan.warmup_steps == 1  # ceil(0.03 * 18)
    assert plan_steps(101, 2, train.model_copy(update={"max_steps": 7})).total_steps == 7
    with pytest.raises(ValueError, match="no full step of 8 rows"):
        plan_steps(7, 2, train)


def test_no_weight_decay_on_biases_and_norms(tiny_dir) -> None:
    from medbase_ray.models.loading import load_model

    model = load_model(str(tiny_dir))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert any(n.endswith("q_proj.bias") for n in kept)
    assert any("norm" in n for n in kept)
    assert not any("norm" in n or n.endswith(".bias") for n in decayed)
    assert any(n.endswith("q_proj.weight") for n in decayed)
    assert len(decayed) + len(kept) == len(list(model.parameters()))


def test_cosine_schedule_with_warmup() -> None:
    import torch

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_lr_scheduler(opt, "cosine", total_steps=100, warmup_steps=3)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[3] == pytest.approx(1.0)
    assert lrs[1] < lrs[2] < lrs[3]  # linear warmup
    assert lrs[51] == pytest.approx(0.5, abs=0.02)  # half way: (51 - 3) / (100 - 3)
    assert lrs[-1] < 0.01
