"""Model and tokenizer loading: the embedded tiny default, or any HF checkpoint by path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medbase_ray.models.tiny import tiny_model_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED = "tiny"


def resolve_model_path(name_or_path: str) -> str:
    """ "tiny" -> the embedded model directory (built if needed); else unchanged."""
    if name_or_path == EMBEDDED:
        return str(tiny_model_dir())
    return name_or_path


def load_tokenizer(
    name_or_path: str = EMBEDDED, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        resolve_model_path(name_or_path), trust_remote_code=trust_remote_code
    )


def torch_dtype(dtype: str, device: str = "cpu"):
    """ "auto": bf16 on a GPU that supports it, fp32 on CPU."""
    import torch

    if dtype == "auto":
        if (
            device.startswith("cuda")
            and torch.cuda.is_available()
            and torch.cuda.is_bf16_supported()
        ):
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_model(
    name_or_path: str = EMBEDDED,
    dtype: str = "auto",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """A causal LM from the embedded default, a local directory or a hub name.

    Hub names need network access; nothing in this project's tests uses one.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    if not Path(path).exists() and name_or_path.startswith((".", "/")):
        raise FileNotFoundError(f"model directory {path} does not exist")
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype(dtype, device), trust_remote_code=trust_remote_code
    )
    return model.to(device)
