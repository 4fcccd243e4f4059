"""Named mixtures every sweep can start from (pure: no Ray).

Each takes the amount of prepared data per language and returns target shares that sum
to 1 over the searched languages:

- equal: the same share for every language;
- natural: proportional to the language's tokens (what concatenating the data gives);
- temperature: p_l ∝ n_l^alpha, as mT5 and XLM-R sample languages (alpha 0.3 there;
  1 is natural, 0 equal);
- unimax: a uniform budget, but no language repeated more than `max_epochs` times; what
  a small language cannot use goes to the others (Chung et al. 2023, Algorithm 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medbase_ray.tune.config import TuneConfig


def equal_shares(languages: list[str]) -> dict[str, float]:
    return {lang: 1.0 / len(languages) for lang in languages}


def temperature_shares(amounts: Mapping[str, float], alpha: float) -> dict[str, float]:
    """p_l ∝ n_l^alpha over languages with data (alpha 1: natural, 0: equal)."""
    scaled = {lang: n**alpha if n > 0 else 0.0 for lang, n in amounts.items()}
    total = sum(scaled.values())
    if not total > 0:
        raise ValueError(f"no prepared data in any of {sorted(amounts)}")
    return {lang: v / total for lang, v in scaled.items()}


def unimax_shares(
    amounts: Mapping[str, float], budget: float, max_epochs: float
) -> dict[str, float]:
    """UniMax: `budget` (same unit as `amounts`) split evenly, each language capped at
    `max_epochs` x its data; the smallest languages are served first so that what they
    cannot use is spread over the larger ones. A budget beyond every cap is shared in
    proportion to the caps."""
    if not budget > 0:
        raise ValueError(f"unimax needs a positive budget, got {budget}")
    caps = {lang: max_epochs * n for lang, n in amounts.items()}
    if sum(caps.values()) <= budget:
        return temperature_shares(caps, 1.0)
    left, alloc = budget, {}
    order = sorted(amounts, key=lambda lang: amounts[lang])
    for i, lang in enumerate(order):
        alloc[lang] = min(left / (len(order) - i), caps[lang])
        left -= alloc[lang]
    return {lang: alloc[lang] / budget for lang in amounts}


def baseline_shares(
    name: str, amounts: Mapping[str, float], budget: float, tune: TuneConfig
) -> dict[str, float]:
    """The shares of baseline `name` over `amounts`' languages."""
    if name == "equal":
        return equal_shares(list(amounts))
    if name == "natural":
        return temperature_shares(amounts, 1.0)
    if name == "temperature":
        return temperature_shares(amounts, tune.temperature_alpha)
    if name == "unimax":
        return unimax_shares(amounts, budget, tune.unimax_max_epochs)
    raise ValueError(f"unknown baseline {name!r}")


def language_tokens(manifest: dict[str, Any], languages: list[str]) -> dict[str, float]:
    """Real tokens per searched language in a prepared manifest (missing: 0)."""
    tokens = dict.fromkeys(languages, 0.0)
    for entry in manifest["sources"].values():
        if entry["language"] in tokens:
            tokens[entry["language"]] += entry["real_tokens"]
    return tokens


def named_mixtures(
    tune: TuneConfig, tokens: Mapping[str, float], budget_tokens: float
) -> dict[str, dict[str, float]]:
    """{baseline name: shares} of `tune.baselines`, each set of shares once (the first
    name that gives it), in the configured order."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(tune.baselines):
        shares = baseline_shares(name, tokens, budget_tokens, tune)
        key = tuple(round(v, 6) for v in shares.values())
        if all(tuple(round(v, 6) for v in s.values()) != key for s in out.values()):
            out[name] = shares
    return out
