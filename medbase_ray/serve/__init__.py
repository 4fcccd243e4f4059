"""The serve stage: an OpenAI-compatible endpoint for any checkpoint, on Ray Serve.

`build_app` and `start_server` are imported lazily: `medbase_ray.config` imports this
package for `ServeConfig`, and importing Ray Serve there would be slow and circular.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "start_server"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from medbase_ray.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'medbase_ray.serve' has no attribute {name!r}")
