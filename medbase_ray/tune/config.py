"""Config of the mixing-ratio sweep."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medbase_ray.config_base import StrictModel


class TuneConfig(StrictModel):
    languages: list[str] = Field(default_factory=lambda: ["en", "zh", "es", "fr", "ar", "hi"])
    search: Literal["random", "grid"] = "random"
    num_samples: int = Field(default=4, ge=1)
    max_concurrent_trials: int = Field(default=1, ge=1)
    trial_max_steps: int = Field(default=50, ge=1)
    metric: str = "dev_accuracy"
    seed: int = 0
