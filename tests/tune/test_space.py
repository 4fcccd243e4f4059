"""The sweep's pure core: trial configs, search space, ranking, the table, validation."""

from __future__ import annotations

import math

import pytest

from medbase_ray.config import ConfigError, PipelineConfig, load_config
from medbase_ray.tune.space import (
    format_table,
    params_of,
    rank_trials,
    shares,
    trial_config,
    weights_of,
)


def test_shares_normalise_and_refuse_an_empty_mixture() -> None:
    assert shares({"en": 1.0, "zh": 3.0}) == {"en": 0.25, "zh": 0.75}
    with pytest.raises(ValueError, match="positive sum"):
        shares({"en": 0.0})
    assert weights_of(params_of({"en": 2.0, "hi": 0.5}) | {"other": 1}) == {"en": 2.0, "hi": 0.5}


def test_trial_config_sets_the_mixture_and_a_short_run_in_its_own_dir() -> None:
    cfg = load_config(preset="tiny", overrides=["tune.trial_max_steps=7", "mixture.seed=3"])
    trial = trial_config(cfg, {"en": 3.0, "zh": 1.0}, "/runs/x/tune/trials/t1")
    assert trial.mixture.by == "language"
    assert trial.mixture.weights == {"en": 0.75, "zh": 0.25}
    assert trial.mixture.seed == 3  # the rest of the mixture is the user's
    assert trial.train.max_steps == 7 and trial.train.dev_benchmark
    # Every report carries the dev figures: at the end only when tune.eval_steps is unset.
    assert trial.train.eval_steps == trial.train.log_steps == 7
    assert trial.train.storage_path == "/runs/x/tune/trials/t1"
    assert cfg.mixture.weights == {} and cfg.train.max_steps is None  # the input is untouched


def test_trials_on_fewer_workers_keep_the_global_batch() -> None:
    cfg = load_config(preset="tiny", overrides=["train.num_workers=4", "train.grad_accum_steps=3",
                                                "tune.trial_num_workers=2"])  # fmt: skip
    trial = trial_config(cfg, {"en": 1.0}, "/runs/x/tune/trials/t1")
    assert (trial.train.num_workers, trial.train.grad_accum_steps) == (2, 6)
    assert (cfg.train.num_workers, cfg.train.grad_accum_steps) == (4, 3)  # untouched
    unset = trial_config(load_config(preset="tiny"), {"en": 1.0}, "/t")
    assert unset.train.num_workers == load_config(preset="tiny").train.num_workers
    # 4 x 3 = 12 rows a step cannot be split evenly over 5 workers: refused at load.
    with pytest.raises(ConfigError, match="trial_num_workers=5 cannot keep the global batch"):
        load_config(preset="tiny", overrides=["train.num_workers=4", "train.grad_accum_steps=3",
                                              "tune.trial_num_workers=5"])  # fmt: skip


def test_rank_trials_by_metric_and_mode_with_missing_values_last() -> None:
    rows = [
        {"trial": "a", "dev_accuracy": 0.30, "loss": 2.0},
        {"trial": "b", "dev_accuracy": float("nan"), "loss": 1.0},
        {"trial": "c", "dev_accuracy": 0.45, "loss": 3.0},
        {"trial": "d", "loss": 0.5},
    ]
    assert [r["trial"] for r in rank_trials(rows, "dev_accuracy", "max")][:2] == ["c", "a"]
    assert {r["trial"] for r in rank_trials(rows, "dev_accuracy", "max")[2:]} == {"b", "d"}
    assert [r["trial"] for r in rank_trials(rows, "loss", "min")] == ["d", "b", "a", "c"]


def test_table_shows_shares_and_per_language_accuracy() -> None:
    row = {
        "trial": "t1",
        "shares": {"en": 0.25, "zh": 0.75},
        "dev_accuracy": 0.5,
        "dev_accuracy_en": 0.4,
        "dev_accuracy_zh": 0.6,
        "loss": 1.234,
        "origin": "natural",
        "realised_shares": {"en": 0.26, "zh": 0.74},
        "step": 4,
        "stopped_early": True,
    }
    table = format_table([row], ["en", "zh"], "dev_accuracy").splitlines()
    assert table[0].startswith("| trial | origin | en share | zh share | dev macro %")
    assert table[0].endswith("| loss | steps | stopped early |")
    assert table[2] == (
        "| t1 | natural | 0.25 (0.26) | 0.75 (0.74) | 50.0 | 40.0 | 60.0 | 1.234 | 4 | yes |"
    )


def test_search_space_random_has_the_named_mixtures_first() -> None:
    from medbase_ray.tune.sweep import build_search

    cfg = load_config(preset="tiny", overrides=["tune.languages=[en, zh]"])
    named = {"equal": {"en": 0.5, "zh": 0.5}, "natural": {"en": 0.9, "zh": 0.1}}
    space, searcher = build_search(cfg, named)
    assert set(space) == {"w_en", "w_zh"}
    # Shares x the number of languages: the equal mixture is all 1s, inside weight_range.
    assert searcher._points_to_evaluate == [{"w_en": 1.0, "w_zh": 1.0}, {"w_en": 1.8, "w_zh": 0.2}]
    low, high = cfg.tune.weight_range
    samples = [space["w_en"].sample() for _ in range(200)]
    assert all(low <= s <= high for s in samples)
    assert min(samples) < 0.5 < 2.0 < max(samples)  # log-uniform over the whole range
    assert math.isclose(sum(shares({"en": 1, "zh": 1}).values()), 1.0)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("tune.search=grid", "grid"),  # a grid needs its mixtures
        ("tune.weight_range=[2, 1]", "weight_range"),
        ("tune.grid=[{xx: 1}]", "not in tune.languages"),
        ("tune.grid=[{en: 0}]", "one > 0"),
        ("tune.num_samples=0", "num_samples"),
    ],
)
def test_bad_tune_config_is_refused_naming_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(preset="tiny", overrides=[override])


def test_defaults_validate() -> None:
    assert PipelineConfig().tune.metric == "dev_accuracy"


def test_optuna_search_is_multi_objective_over_the_languages() -> None:
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from medbase_ray.tune.sweep import build_scheduler, build_search

    cfg = load_config(
        preset="tiny",
        overrides=["tune.languages=[en, zh]", "tune.search=optuna",
                   "tune.objectives=per_language", "tune.scheduler=asha"],
    )  # fmt: skip
    space, searcher = build_search(cfg, {"equal": {"en": 0.5, "zh": 0.5}})
    assert isinstance(searcher, OptunaSearch)
    assert searcher.metric == ["dev_accuracy_en", "dev_accuracy_zh"]
    assert searcher.mode == ["max", "max"]
    assert searcher._points_to_evaluate == [{"w_en": 1.0, "w_zh": 1.0}]
    assert space["w_en"].lower == 0.0 and space["w_en"].upper == 1.0  # the simplex, normalised
    # As Tune does: the space, then two finished trials; a study with two objectives
    # keeps both on its front.
    assert searcher.set_search_properties(None, None, space)
    for i, (en, zh) in enumerate([(0.6, 0.2), (0.3, 0.5)]):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"dev_accuracy_en": en, "dev_accuracy_zh": zh})
    assert len(searcher._ot_study.best_trials) == 2
    scheduler = build_scheduler(cfg)
    assert isinstance(scheduler, ASHAScheduler) and scheduler._time_attr == "step"


def test_token_shares_count_real_tokens_per_language() -> None:
    import pyarrow as pa

    from medbase_ray.tune.space import token_shares

    rows = pa.table({"language": ["en", "zh", "en"], "n_real_tokens": [30, 20, 50]})
    assert token_shares(rows) == {"en": 0.8, "zh": 0.2}
    assert token_shares(rows.slice(0, 0)) == {}
