"""Serve and eval take the chat format from the checkpoint (issue 11), and refuse a
config that contradicts it. The checkpoint is trained with the tokenizer's ChatML
template (`template_checkpoint`); nothing in the config names a chat format."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from medbase_ray.cli import app
from medbase_ray.config import ModelConfig, PipelineConfig, load_config
from medbase_ray.models.chat import apollo_prompt
from medbase_ray.models.checkpoint_info import SettingsConflict
from medbase_ray.models.loading import load_tokenizer
from medbase_ray.serve.app import build_app

from .conftest import CHATML_TEMPLATE

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Which organ secretes insulin?"}]


def test_checkpoint_records_the_template(template_checkpoint: str) -> None:
    from medbase_ray.models.checkpoint_info import read_checkpoint_config

    assert read_checkpoint_config(template_checkpoint)["model"]["chat_format"] == "template"
    assert load_tokenizer(template_checkpoint).chat_template == CHATML_TEMPLATE


def test_serve_renders_chat_with_the_checkpoints_template(
    template_checkpoint: str, deploy_variant
) -> None:
    tok = load_tokenizer(template_checkpoint)
    templated = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert templated.startswith("<|im_start|>user\n")
    want = len(tok(templated, add_special_tokens=False)["input_ids"])
    apollo = len(tok(apollo_prompt(MESSAGES, eos=tok.eos_token))["input_ids"])
    assert want != apollo  # the two renderings are told apart by the count
    assert PipelineConfig().model.chat_format is None  # the default preset sets none
    with deploy_variant(template_checkpoint, "tmpl") as url:
        body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 2, "temperature": 0}
        reply = httpx.post(f"{url}/chat/completions", json=body, timeout=120).json()
        assert reply["usage"]["prompt_tokens"] == want
        info = httpx.get(url.removesuffix("/v1") + "/tokenizer_info", timeout=60).json()
        assert info["chat_format"] == "template" and info["chat_template"] == CHATML_TEMPLATE
        # The rendered prompt, echoed by the completions route, is the template's.
        echo = {"model": "tiny", "prompt": templated, "max_tokens": 0, "echo": True}
        text = httpx.post(f"{url}/completions", json=echo, timeout=120).json()
        assert text["choices"][0]["text"] == templated
        assert text["usage"]["prompt_tokens"] == reply["usage"]["prompt_tokens"]


def test_eval_in_process_uses_the_checkpoints_template(
    template_checkpoint: str, tmp_path: Path
) -> None:
    from medbase_ray.eval.prompts import load_templates, question_turn
    from medbase_ray.eval.runner import run_eval

    bench = tmp_path / "bench.json"
    items = [
        {
            "question": "Which organ secretes insulin?",
            "options": "(A) Liver\n(B) Pancreas\n(C) Kidney\n(D) Spleen",
            "answer": "(B)",
            "source": "medqa-usmle",
        }
    ]
    bench.write_text(json.dumps(items))
    cfg = load_config(
        preset="tiny",
        overrides=[
            f"eval.benchmark={bench}",
            f"model.name_or_path={template_checkpoint}",
            "eval.mode=generate", "eval.k_shot=0", "eval.max_new_tokens=1",
            "eval.bootstrap_samples=0", "eval.cpu_threads=1",
        ],
    )  # fmt: skip
    report = run_eval(cfg, out_dir=str(tmp_path / "eval"))
    assert report["run"]["chat_format"] == "template"
    assert "chat_format" in report["run"]["model_settings_from_checkpoint"]
    tok = load_tokenizer(template_checkpoint)
    row = json.loads((tmp_path / "eval" / "results.jsonl").read_text())
    user = question_turn({**row, "answer": "B"}, load_templates()["en"])
    messages = [{"role": "user", "content": user}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert row["prompt_tokens"] == len(tok(text)["input_ids"])


def test_a_contradicting_chat_format_is_refused_naming_both(template_checkpoint: str) -> None:
    with pytest.raises(SettingsConflict, match=r"'apollo'.*'template'"):
        build_app(template_checkpoint, PipelineConfig().serve, ModelConfig(chat_format="apollo"))
    result = CliRunner().invoke(
        app, ["serve", template_checkpoint, "--set", "model.chat_format=apollo"]
    )
    assert result.exit_code == 2
    assert "model.chat_format is 'apollo'" in result.output
    assert "trained with 'template'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(
        app, ["eval", "--checkpoint", template_checkpoint, "--set", "model.chat_format=apollo"]
    )
    assert result.exit_code == 2 and "'template'" in result.output
