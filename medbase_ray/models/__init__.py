"""Models: the embedded tiny default, loading of any HF checkpoint, chat formats."""

from medbase_ray.models.loading import EMBEDDED, load_model, load_tokenizer, resolve_model_path
from medbase_ray.models.tiny import tiny_model_dir

__all__ = ["EMBEDDED", "load_model", "load_tokenizer", "resolve_model_path", "tiny_model_dir"]
