"""Config of the mixing-ratio sweep (`medbase tune`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel


class TuneConfig(StrictModel):
    """Each trial trains on the prepared sources mixed with its own language weights
    (`mixture.by: language`) for `trial_max_steps` steps, then scores the benchmark's dev
    split (`train.dev_benchmark`); the sweep ranks trials by `metric`."""

    languages: list[str] = Field(
        default_factory=lambda: ["en", "zh", "es", "fr", "ar", "hi"],
        min_length=1,
        description="The languages whose weights are searched; the others keep none of the budget.",
    )
    search: Literal["random", "grid"] = Field(
        default="random",
        description=(
            "random: each weight drawn log-uniformly from weight_range (num_samples trials); "
            "grid: the mixtures of `grid`, each run num_samples times."
        ),
    )
    num_samples: int = Field(
        default=4,
        ge=1,
        description="random/optuna: trials in all (the baselines first); grid: runs of each mixture.",
    )
    weight_range: tuple[float, float] = Field(
        default=(0.25, 4.0),
        description="random: the (low, high) range each language weight is drawn from, log-uniformly.",
    )
    grid: list[dict[str, float]] = Field(
        default_factory=list, description="grid: the mixtures to run, each a {language: weight}."
    )
    include_equal: bool = Field(
        default=True,
        description=(
            "random search: the first of the num_samples trials is the equal mixture (the "
            "reference)."
        ),
    )
    max_concurrent_trials: int = Field(
        default=1,
        ge=1,
        description="Trials at once; each one takes train.num_workers x train.resources_per_worker.",
    )
    trial_max_steps: int = Field(default=50, ge=1, description="Optimizer steps of each trial.")
    metric: str = Field(
        default="dev_accuracy",
        description=(
            "What ranks trials: dev_accuracy (six-language macro), dev_accuracy_<lang>, or a "
            "training figure of the last step (loss, dev_loss)."
        ),
    )
    mode: Literal["max", "min"] = Field(
        default="max", description="max: a higher metric is better; min: lower."
    )
    seed: int = Field(default=0, description="Seed of the search and of the proposal's candidates.")

    @model_validator(mode="after")
    def _check(self) -> TuneConfig:
        low, high = self.weight_range
        if not 0 < low <= high:
            raise ValueError(f"weight_range must be 0 < low <= high, got {self.weight_range}")
        if self.search == "grid" and not self.grid:
            raise ValueError("search: grid needs `grid`, a list of {language: weight} mixtures")
        for i, point in enumerate(self.grid):
            unknown = sorted(set(point) - set(self.languages))
            if unknown:
                raise ValueError(f"grid[{i}]: languages {unknown} are not in tune.languages")
            if any(not w >= 0 for w in point.values()) or not any(w > 0 for w in point.values()):
                raise ValueError(f"grid[{i}]: weights must be >= 0 with one > 0, got {point}")
        return self
