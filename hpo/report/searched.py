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

__all__ = ["bounds_hit", "searched_row", "space_units_ceiling"]


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


def searched_row(arch: str, study: optuna.Study, budget: int) -> dict[str, Any]:
    """One row of the report's "what was searched" table."""
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
    return {
        "architecture": arch,
        "complete_trials": len(complete),
        "max_epochs_run": max(epochs) if epochs else None,
        "max_units_per_layer_used": max(units) if units else None,
        "space_ceiling": space_units_ceiling(complete),
        "budget": budget,
        "best_on_bound": ", ".join(bounds_hit(best)) if best is not None else "",
    }
