"""What the tuner actually explored, so a reader can judge whether the comparison's budget was used and enough.

Per architecture: complete trials, the most epochs any trial ran, the largest units per layer any trial used
against the search space's ceiling (the highest bound of its units parameters) and the study's budget, and every parameter of the best trial that sits on a bound of its search range (a best
value on a bound says the range, not the tuner, chose it). Bounds come from the distributions Optuna stored with
each trial, so this reads the storage only.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import FloatDistribution, IntDistribution

from hpo.storage import keys

__all__ = ["bounds_hit", "final_bounds_hit", "searched_row", "space_units_ceiling"]


def _on_bound(value: Any, dist: optuna.distributions.BaseDistribution) -> str | None:
    if not isinstance(dist, (FloatDistribution, IntDistribution)) or dist.low == dist.high:
        return None
    tol = 1e-9 * max(1.0, abs(dist.high))
    if math.isclose(value, dist.low, abs_tol=tol):
        # a count at a floor of 1 (one layer, one expert) is where no wider range could go: not the range's choice
        return None if isinstance(dist, IntDistribution) and dist.low <= 1 else "low"
    if math.isclose(value, dist.high, abs_tol=tol):
        return "high"
    return None


def bounds_hit(trial: optuna.trial.FrozenTrial) -> list[str]:
    """``name=value (low|high)`` for every numeric parameter of ``trial`` on a bound of its range."""
    out = []
    for name, value in trial.params.items():
        side = _on_bound(value, trial.distributions[name])
        if side is not None:
            out.append(f"{name}={value:g} ({side})")
    return out


def final_bounds_hit(trials: list[optuna.trial.FrozenTrial], number: int, budget: int) -> list[str]:
    """:func:`bounds_hit` for trial ``number`` against the study's final ranges (each parameter's distribution in
    the last trial that drew it, so after any widening) rather than those it was drawn from, and with a units
    count at the budget's ceiling no bound (no wider range can go there): as the convergence rule judges a best
    trial (:func:`hpo.search.settle.bound_hits`). A configuration drawn before its range was widened is on no
    bound of the wider range."""
    final: dict[str, optuna.distributions.BaseDistribution] = {}
    for t in trials:  # by number: a later draw's range replaces an earlier one's
        final.update(t.distributions)
    chosen = next(t for t in trials if t.number == number)
    out = []
    for name, value in chosen.params.items():
        dist = final.get(name, chosen.distributions[name])
        side = _on_bound(value, dist)
        at_ceiling = isinstance(dist, IntDistribution) and "units" in name and dist.high >= budget
        if side is not None and not (side == "high" and at_ceiling):
            out.append(f"{name}={value:g} ({side})")
    return out


def space_units_ceiling(trials: list[optuna.trial.FrozenTrial]) -> int | None:
    """The largest upper bound of any integer ``*units*`` parameter the trials were drawn from: what the search
    space allowed per layer, which a study run on small spaces reports beside the (larger) budget."""
    highs = [
        int(d.high)
        for t in trials
        for name, d in t.distributions.items()
        if "units" in name and isinstance(d, IntDistribution)
    ]
    return max(highs) if highs else None


def searched_row(arch: str, study: optuna.Study, budget: int, retrained: int | None = None) -> dict[str, Any]:
    """One row of the report's "what was searched" table. ``retrained``: the tuning trial the retraining took,
    where a seed probe (``retrain.select``) chose one other than the best: its number and bound hits are added
    (``retrained_trial``, ``retrained_on_bound``), since the verdict compares that configuration, not the best."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.values and all(map(math.isfinite, t.values))
    ]
    units = [max(keys.plain(t.user_attrs).get(keys.UNITS_PER_LAYER) or [0]) for t in complete]
    epochs = [keys.plain(t.user_attrs).get(keys.EPOCHS_RUN) or 0 for t in complete]
    best: optuna.trial.FrozenTrial | None = None
    if complete and len(study.directions) == 1:
        best = study.best_trial
    row: dict[str, Any] = {
        "architecture": arch,
        "complete_trials": len(complete),
        "max_epochs_run": max(epochs) if epochs else None,
        "max_units_per_layer_used": max(units) if units else None,
        "space_ceiling": space_units_ceiling(complete),
        "budget": budget,
        "best_on_bound": ", ".join(bounds_hit(best)) if best is not None else "",
    }
    chosen = [t.number for t in complete if t.number == retrained]  # none for the defaults' -1
    if chosen and best is not None and chosen[0] != best.number:
        row["retrained_trial"] = chosen[0]
        trials = study.get_trials(deepcopy=False)
        row["retrained_on_bound"] = ", ".join(final_bounds_hit(trials, chosen[0], budget))
    return row
