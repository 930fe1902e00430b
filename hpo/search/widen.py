"""Search ranges that widen when the best configuration sits on their bound (``expand`` on a parameter).

A best value on a bound of its range says the range, not the tuner, chose it, and a verdict built on it compares
ranges. The settled rule (:mod:`hpo.search.settle`) therefore never calls such an architecture settled, and where
the parameter allows it (``expand: true``) it widens that side of the range (:meth:`ParamRange.widened`: a
log-scaled bound halves or doubles, a linear one moves by half the span) before it queues more trials. Each
widening is recorded on the study (``space_expansions``: when, which parameter, which side, the range before and
after), so that every worker, every resumed run and the report read the same current ranges from the database;
the trials keep the distribution they were drawn from, so a bound hit is always judged against the range the
best trial saw.

Optuna's GP sampler (and TPE's multivariate mode) model only the parameters whose distribution is the same in
every trial, and would draw a widened parameter at random from then on. :class:`WideningSampler` hands them the
current, widened distribution instead: it contains every earlier range, so every earlier value still lies inside
it, which is all these samplers need to model it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import optuna

from hpo.config.space import SearchSpace
from hpo.storage import keys

__all__ = ["WideningSampler", "current_ranges", "current_spaces", "expandable", "widen"]

Side = Literal["low", "high"]


def expandable(spaces: Sequence[SearchSpace]) -> bool:
    """Whether any parameter of ``spaces`` may widen."""
    return any(r.expandable() for s in spaces for r in s.params.values())


def current_ranges(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each widened parameter's current ``(low, high)``: its last recorded widening."""
    return {str(r["param"]): (float(r["to"][0]), float(r["to"][1])) for r in records}


def current_spaces(study: optuna.Study, spaces: Sequence[SearchSpace]) -> list[SearchSpace]:
    """``spaces`` with the widenings recorded on ``study`` applied (the spaces themselves when there are none)."""
    records = keys.plain(study.user_attrs).get(keys.SPACE_EXPANSIONS) or []
    if not records:
        return list(spaces)
    ranges = current_ranges(records)
    return [s.with_ranges(ranges) for s in spaces]


def widen(
    spaces: Sequence[SearchSpace],
    sides: Sequence[tuple[str, Side]],
    *,
    budget: int,
    trials: int,
    fits: Callable[[SearchSpace], bool],
) -> list[dict[str, Any]]:
    """The widenings of the parameters on a bound (``sides``) that allow one, as records for the study. A
    widened model space must still keep every configuration within the budget (``fits``); a widening that
    would not is left out (the bound stays, and so does the hit)."""
    out = []
    for space in spaces:
        running = space
        for name, side in sides:
            r = running.params.get(name)
            if r is None or not r.expandable():
                continue
            wider = r.widened(side, name, budget)
            if wider is None:
                continue
            assert wider.low is not None and wider.high is not None
            candidate = running.with_ranges({name: (wider.low, wider.high)})
            if not fits(candidate):
                continue
            running = candidate
            out.append(
                {
                    "trials": trials,
                    "param": name,
                    "side": side,
                    "from": [r.low, r.high],
                    "to": [wider.low, wider.high],
                }
            )
    return out


class WideningSampler(optuna.samplers.BaseSampler):
    """``inner`` with the current distribution of every widened parameter put back in its relative search space
    (see the module's docstring); everything else is ``inner``'s own."""

    def __init__(self, inner: optuna.samplers.BaseSampler, spaces: Sequence[SearchSpace]) -> None:
        self.inner, self.spaces = inner, list(spaces)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        space = self.inner.infer_relative_search_space(study, trial)
        records = keys.plain(study.user_attrs).get(keys.SPACE_EXPANSIONS) or []
        if not space or not records:  # a sampler that draws each parameter on its own needs nothing
            return space
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        widened = current_ranges(records)
        for s in current_spaces(study, self.spaces):
            for name in widened.keys() & s.params.keys():
                if all(name in t.params for t in complete):
                    space[name] = s.params[name].distribution()
        return space

    def sample_relative(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        search_space: dict[str, optuna.distributions.BaseDistribution],
    ) -> dict[str, Any]:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
