"""Model and tokenizer loading: the embedded tiny default, or any HF checkpoint by path.

`model.dtype` is the one precision setting of the pipeline (train, serve and eval):
its values are torch's own dtype names, so `resolve_dtype` is the only mapping there is.

This module stays importable without torch and transformers (checkpoint_info imports it
on drivers that only resolve settings); they are imported where a model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medbase_ray.models.chat import APOLLO_CHAT_TEMPLATE
from medbase_ray.models.tiny import tiny_model_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED = "tiny"


def resolve_model_path(name_or_path: str) -> str:
    """ "tiny" -> the embedded model directory (built if needed); else unchanged."""
    if name_or_path == EMBEDDED:
        return str(tiny_model_dir())
    return name_or_path


def resolve_dtype(dtype: str, on_gpu: bool, gpu_has_bf16: bool = True) -> str:
    """`model.dtype` -> the dtype weights are loaded and trained in ("float32",
    "bfloat16" or "float16"). "auto": bfloat16 on a GPU that has it, else float32
    (CPU bf16 matmuls are slow and imprecise)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if on_gpu and gpu_has_bf16 else "float32"


def torch_dtype(dtype: str, device: str = "cpu") -> torch.dtype:
    """`model.dtype` as a torch dtype on `device` (see resolve_dtype)."""
    import torch  # heavy: only where a model is loaded

    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    name = resolve_dtype(dtype, on_gpu, on_gpu and torch.cuda.is_bf16_supported())
    return getattr(torch, name)  # the names are torch's own


def load_tokenizer(
    name_or_path: str = EMBEDDED, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer of a model directory (or "tiny", or a hub name), as saved."""
    from transformers import AutoTokenizer  # heavy: only where a tokenizer is loaded

    return AutoTokenizer.from_pretrained(
        resolve_model_path(name_or_path), trust_remote_code=trust_remote_code
    )


def load_chat_tokenizer(
    name_or_path: str, chat_format: str, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer whose chat template renders `chat_format`: Apollo's template for
    "apollo", the saved one for "template". Train saves it in every checkpoint, so serve
    and eval render prompts as the model was trained."""
    tokenizer = load_tokenizer(name_or_path, trust_remote_code)
    if chat_format == "apollo":
        tokenizer.chat_template = APOLLO_CHAT_TEMPLATE
    return tokenizer


def load_model(
    name_or_path: str = EMBEDDED,
    dtype: str = "auto",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """A causal LM from the embedded default, a local directory or a hub name.

    Hub names need network access; nothing in this project's tests uses one.
    """
    from transformers import AutoModelForCausalLM  # heavy: only where a model is loaded

    path = resolve_model_path(name_or_path)
    if not Path(path).exists() and name_or_path.startswith((".", "/")):
        raise FileNotFoundError(f"model directory {path} does not exist")
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype(dtype, device), trust_remote_code=trust_remote_code
    )
    return model.to(device)
