"""Config of the mixture optimizer (`medbase tune`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medbase_ray.config_base import StrictModel
from medbase_ray.train.config import TrainConfig

Baseline = Literal["equal", "natural", "temperature", "unimax"]


class FaultInjection(StrictModel):
    """Make one trial fail at a step (tests of the sweep's robustness; never in a run)."""

    trial: int = Field(
        ge=0, description="Test only: the ordinal of the trial that fails on purpose."
    )  # the trial's ordinal in the sweep (Tune's trial id suffix)
    at_step: int = Field(
        ge=2, description="Test only: the step at which it fails (the steps before it train)."
    )


class TuneConfig(StrictModel):
    """Each trial trains on the prepared sources mixed with its own language weights
    (`mixture.by: language`) for `trial_max_steps` steps, scoring the benchmark's dev
    split (`train.dev_benchmark`) every `eval_steps`; the sweep ranks trials by `metric`,
    fits a regression from mixture to accuracy and trains the mixture it proposes."""

    languages: list[str] = Field(
        default_factory=lambda: ["en", "zh", "es", "fr", "ar", "hi"],
        min_length=1,
        description="The languages whose weights are searched; the others keep none of the budget.",
    )
    search: Literal["random", "grid", "optuna"] = Field(
        default="random",
        description=(
            "random: each weight drawn log-uniformly from weight_range (num_samples trials); "
            "grid: the mixtures of `grid`, each run num_samples times; optuna: Optuna's TPE "
            "over the simplex (weights uniform in [0, 1], normalised), multi-objective (one "
            "objective per language) when `objectives: per_language`."
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
    baselines: list[Baseline] = Field(
        default_factory=lambda: ["equal"],
        description=(
            "Named mixtures every sweep runs first (random/optuna: the first of num_samples; "
            "grid: before the grid): equal; natural (proportional to the prepared tokens); "
            "temperature (p ∝ n^temperature_alpha, as mT5 / XLM-R sample languages); unimax "
            "(a uniform budget with at most unimax_max_epochs passes over a language, Chung "
            "et al. 2023). Baselines giving the same shares run once."
        ),
    )
    temperature_alpha: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="The temperature baseline's exponent: p ~ tokens^alpha (1: natural, 0: equal).",
    )
    unimax_max_epochs: float = Field(
        default=4.0, gt=0, description="The unimax baseline: most passes over one language's data."
    )
    objectives: Literal["metric", "per_language"] = Field(
        default="metric",
        description=(
            "metric: one objective (`metric`, `mode`); per_language: optuna optimises each "
            "language's dev accuracy (multi-objective); the Pareto front is written either "
            "way."
        ),
    )
    floors: dict[str, float] = Field(
        default_factory=dict,
        description=(
            '"No language below X": {language: minimum dev accuracy (0-1)}, a constraint on '
            "the choice of the best trial and on the proposal."
        ),
    )
    scheduler: Literal["fifo", "asha"] = Field(
        default="fifo",
        description=(
            "fifo: every trial runs its trial_max_steps; asha: ASHA stops poor trials early "
            "(training steps as time, rungs from grace_period_steps, reduction_factor)."
        ),
    )
    grace_period_steps: int = Field(
        default=2, ge=1, description="asha: steps every trial runs before it can be stopped."
    )
    reduction_factor: float = Field(
        default=3.0,
        gt=1,
        description=(
            "asha: at each rung only the best 1/reduction_factor of the trials go on "
            "(3: Hyperband's default eta; Ray's ASHAScheduler defaults to 4)."
        ),
    )
    max_concurrent_trials: int = Field(
        default=1,
        ge=1,
        description=(
            "Trials at once; each one takes its workers (trial_num_workers, else "
            "train.num_workers) x train.resources_per_worker."
        ),
    )
    trial_num_workers: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Ray Train workers of each trial; None: train.num_workers. Fewer workers a "
            "trial let more trials run side by side; the global batch stays the same "
            "(grad_accum_steps x train.num_workers / trial_num_workers, which must be whole)."
        ),
    )
    trial_max_steps: int = Field(default=50, ge=1, description="Optimizer steps of each trial.")
    eval_steps: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Dev accuracy (and a report to Tune) every eval_steps of a trial; None: at the end."
        ),
    )
    metric: str = Field(
        default="dev_accuracy",
        description=(
            "What ranks trials: dev_accuracy (macro over the benchmark's languages), "
            "dev_accuracy_<lang>, or a training figure of the last step (loss)."
        ),
    )
    mode: Literal["max", "min"] = Field(
        default="max", description="max: a higher metric is better; min: lower."
    )
    propose: bool = Field(
        default=True,
        description=(
            "The RegMix-style proposal: fit mixture -> accuracy on the finished trials, "
            "search proposal_candidates mixtures, average the top_k, train it as a final "
            "trial."
        ),
    )
    proposal_candidates: int = Field(
        default=20_000, ge=100, description="Random mixtures the proposal's regression scores."
    )
    proposal_top_k: int = Field(
        default=100, ge=1, description="The best-scored candidates averaged into the proposal."
    )
    seed: int = Field(default=0, description="Seed of the search and of the proposal's candidates.")
    fault_injection: FaultInjection | None = None

    @model_validator(mode="after")
    def _check(self) -> TuneConfig:
        problems = []
        low, high = self.weight_range
        if not 0 < low <= high:
            problems.append(f"weight_range must be 0 < low <= high, got {self.weight_range}")
        if self.search == "grid" and not self.grid:
            problems.append("search: grid needs `grid`, a list of {language: weight} mixtures")
        for i, point in enumerate(self.grid):
            unknown = sorted(set(point) - set(self.languages))
            if unknown:
                problems.append(f"grid[{i}]: languages {unknown} are not in tune.languages")
            if any(not w >= 0 for w in point.values()) or not any(w > 0 for w in point.values()):
                problems.append(f"grid[{i}]: weights must be >= 0 with one > 0, got {point}")
        unknown = sorted(set(self.floors) - set(self.languages))
        if unknown:
            problems.append(f"floors: languages {unknown} are not in tune.languages")
        if any(not 0 <= v <= 1 for v in self.floors.values()):
            problems.append(f"floors: accuracies are fractions in [0, 1], got {self.floors}")
        if self.objectives == "per_language" and self.search != "optuna":
            problems.append("objectives: per_language needs search: optuna")
        if self.search != "grid" and self.num_samples < len(set(self.baselines)):
            problems.append(
                f"num_samples ({self.num_samples}) must hold the {len(set(self.baselines))} "
                "baselines, which are its first trials"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def trial_grad_accum(train: TrainConfig, workers: int) -> int:
    """grad_accum_steps of a trial on `workers` workers with train's global batch."""
    rows = train.grad_accum_steps * train.num_workers
    if rows % workers:
        raise ValueError(
            f"tune.trial_num_workers={workers} cannot keep the global batch: "
            f"train.grad_accum_steps x train.num_workers = {rows} is not a multiple of it"
        )
    return rows // workers
