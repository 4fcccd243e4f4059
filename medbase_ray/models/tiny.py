"""The embedded default: a tiny Qwen2 model and a byte-level BPE tokenizer.

Built on first use, with no download: the tokenizer is trained on the bundled
multilingual corpus, the model is randomly initialised from a fixed config and seed.
Both are saved as a normal Hugging Face model directory in the user cache, keyed by a
hash of their recipe, so every process (Ray workers included) loads the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from medbase_ray.corpus.readers import sample_dir
from medbase_ray.models.chat import APOLLO_CHAT_TEMPLATE, EOS
from medbase_ray.storage import cache_root

PAD = "<|pad|>"
# ~5M parameters: most of the compute of such a model is in its output layer, so the
# vocabulary is kept at 8192 (measured: ~3k tokens/s training on 2 CPUs at seq 512).
TINY_MODEL_CONFIG: dict = {
    "vocab_size": 8192,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
}
TOKENIZER_RECIPE: dict = {"vocab_size": 8192, "min_frequency": 2, "specials": [EOS, PAD]}
SEED = 1234
# Qwen2's pre-tokenizer split (transformers.models.qwen2.tokenization_qwen2), copied so
# that the recipe hash sees it. It cuts Devanagari words at vowel signs (\p{M} is not in
# \p{L}), as real Qwen2 does: Hindi takes ~2x the tokens of the other languages.
QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
RECIPE_VERSION = 2  # bump when the build code changes in a way the hash cannot see


def _training_texts() -> list[str]:
    """Every string of the bundled corpus and benchmark, in a fixed order."""
    texts: list[str] = []
    for path in sorted(sample_dir().rglob("*.json")):
        stack = [json.loads(path.read_text(encoding="utf-8"))]
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                texts.append(node)
            elif isinstance(node, list):
                stack.extend(reversed(node))
            elif isinstance(node, dict):
                stack.extend(reversed(list(node.values())))
    return texts


def recipe_hash() -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [TINY_MODEL_CONFIG, TOKENIZER_RECIPE, QWEN2_SPLIT, SEED, RECIPE_VERSION]
        ).encode()
    )
    for text in _training_texts():
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:12]


def train_tokenizer(texts: list[str]):
    """A byte-level BPE tokenizer (every string round-trips) with EOS and pad tokens."""
    # Heavy, and only needed to build: this module is imported by models.loading, which
    # stays importable without transformers.
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Exactly the pipeline transformers' Qwen2Tokenizer applies when it loads this
    # directory (it rebuilds normalizer and pre-tokenizer from its own code): merges
    # learnt under another split would be applied to pieces they were not learnt on.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_RECIPE["vocab_size"],
        min_frequency=TOKENIZER_RECIPE["min_frequency"],
        special_tokens=TOKENIZER_RECIPE["specials"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
        model_max_length=TINY_MODEL_CONFIG["max_position_embeddings"],
    )
    fast.chat_template = APOLLO_CHAT_TEMPLATE
    return fast


def build_tiny(out_dir: Path) -> None:
    """Write the tokenizer and the randomly initialised model to `out_dir`."""
    import torch  # heavy, and only needed to build (see train_tokenizer)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(_training_texts())
    config = Qwen2Config(
        **TINY_MODEL_CONFIG,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # the recipe is the directory's name (recipe_hash)


def tiny_model_dir() -> Path:
    """The embedded model directory, built on first use (safe across processes)."""
    target = cache_root() / "models" / f"tiny-{recipe_hash()}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tiny(tmp)
        try:
            os.rename(tmp, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
