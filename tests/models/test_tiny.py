"""The embedded tiny model: tokenizer round-trip, chat format, forward/backward on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medbase_ray.corpus.readers import sample_dir
from medbase_ray.models.chat import apollo_prompt, apollo_segments
from medbase_ray.models.loading import load_model, load_tokenizer, resolve_model_path
from medbase_ray.models.tiny import TINY_MODEL_CONFIG, _training_texts, recipe_hash, tiny_model_dir


def test_tiny_dir_is_a_normal_hf_model_dir(tiny_dir: Path) -> None:
    assert resolve_model_path("tiny") == str(tiny_dir)
    assert tiny_dir.name == f"tiny-{recipe_hash()}"
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert (tiny_dir / "tokenizer.json").exists()


def test_tokenizer_round_trips_every_bundled_text(tiny_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_dir))
    texts = _training_texts()
    assert len(texts) > 1000
    assert tok.vocab_size <= TINY_MODEL_CONFIG["vocab_size"]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    # Special tokens are single ids and distinct.
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id
    assert tok("<|endoftext|>", add_special_tokens=False)["input_ids"] == [tok.eos_token_id]


def test_loaded_tokenizer_splits_as_the_trained_one(tiny_dir: Path) -> None:
    """AutoTokenizer rebuilds a Qwen2 tokenizer's split from transformers' own code; the
    merges were learnt under that same split, so both give the same ids on every text
    (they did not when the BPE was trained with GPT-2's split)."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    tok = load_tokenizer(str(tiny_dir))
    texts = _training_texts()[::7]
    assert [raw.encode(t).ids for t in texts] == [
        tok(t, add_special_tokens=False)["input_ids"] for t in texts
    ]


def test_round_trip_in_all_six_languages(tiny_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_dir))
    by_lang: dict[str, str] = {}
    for path in sorted((sample_dir() / "apollo").glob("*_text.json")):
        lang = path.stem.split("_")[1]
        by_lang[lang] = json.loads(path.read_text(encoding="utf-8"))[0]
    assert set(by_lang) == {"en", "zh", "es", "fr", "ar", "hi"}
    for text in by_lang.values():
        assert tok.decode(tok(text)["input_ids"]) == text
    # Most of the corpus compresses well: under 1 token per 2 characters on average.
    joined = "".join(by_lang.values())
    assert len(tok(joined)["input_ids"]) < len(joined) / 2


def test_chat_template_matches_apollo_format(tiny_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_dir))
    turns = [
        "What causes scurvy?",
        "Vitamin C deficiency.",
        "And rickets?",
        "Vitamin D deficiency.",
    ]
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)
    ]
    rendered = "".join(t for t, _ in apollo_segments(turns))
    assert tok.apply_chat_template(messages, tokenize=False) == rendered
    assert rendered == (
        "User:What causes scurvy?\nAssistant:Vitamin C deficiency.<|endoftext|>\n"
        "User:And rickets?\nAssistant:Vitamin D deficiency.<|endoftext|>"
    )
    assert apollo_prompt(messages[:1]) == "User:What causes scurvy?\nAssistant:"


def test_forward_backward_on_cpu(tiny_dir: Path) -> None:
    model = load_model(str(tiny_dir))
    n_params = sum(p.numel() for p in model.parameters())
    assert 3e6 < n_params < 8e6
    tok = load_tokenizer(str(tiny_dir))
    ids = torch.tensor([tok("User:hello\nAssistant:hi<|endoftext|>")["input_ids"]])
    out = model(input_ids=ids, labels=ids, use_cache=False)
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_same_recipe_builds_the_same_model(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Built again from scratch in another cache: every tensor and the tokenizer equal
    (the seeded init and the BPE training are deterministic), so every process and
    machine that builds the embedded model gets this one."""
    from safetensors.torch import load_file

    monkeypatch.setenv("MEDBASE_CACHE", str(tmp_path))
    rebuilt = tiny_model_dir()
    assert rebuilt.parent == tmp_path / "models" and rebuilt.name == tiny_dir.name
    ours, theirs = (load_file(str(d / "model.safetensors")) for d in (tiny_dir, rebuilt))
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name
    assert (rebuilt / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()
