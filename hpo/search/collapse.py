"""The Gaussian-process sampler, shown a collapsed trial as the worst of the rest.

A GP models the objective over the search space after standardising the trials' values. On census, trials sit at
0.94-0.95 validation AUC, and one in ten or so diverges or keeps a constant output and scores 0.5: a single such
value sets the standard deviation (about 0.13 against 0.003 for the rest), so the differences between the
configurations that learned, the only ones the tuning is about, shrink to a few hundredths of a unit, under the
GP's noise, and the acquisition function is left with little more than "away from the collapse". Measured on a
census-like surface (``bench/sampler_collapse.py``): with a collapse region covering an eighth of the space, the
plain GP's regret after 32 trials stayed where it was at 12, about five times that of the same GP on the same
surface with nothing collapsing, and a region of trials that learned only a little (0.80) did the same; shown each
collapsed trial (one whose gain over the chance level is under 80% of the median trial's) as the worst value of
the rest, it reached the no-collapse regret. Where nothing collapses it proposes exactly what the plain GP does.

Only the sampler's view changes: every trial keeps its true value in the storage, which the report, the settled
rule and the dashboard read. ``sampler: {collapsed: raw}`` turns the view off. Each proposal records how many
trials it saw as collapsed and the value it showed them as (``sampler_view`` on the trial).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from hpo.errors import HpoError

__all__ = ["CollapseAwareGPSampler", "last_view", "sampler_values"]


# a trial is collapsed when its gain over the chance level is under this share of the median trial's gain
LEARNED_SHARE = 0.8


def sampler_values(
    values: np.ndarray, chance: float | None, *, higher_is_better: bool
) -> tuple[np.ndarray, int]:
    """``values`` as the GP sees them: each collapsed one replaced by the worst of the rest; and how many were
    replaced. *Collapsed*: its gain over ``chance`` (the objective's chance level) is under
    :data:`LEARNED_SHARE` of the median trial's: on census income AUC, whose trials sit at 0.94-0.95, a value
    under about 0.855, a run that learned nothing (0.5) or far less than the typical trial (0.80). The scale is the
    objective's own learning range, not the spread of the trials, so it does not narrow as the GP converges
    (a rule from the trials' robust spread, as the seed probe's, flagged ordinary trials once the proposals
    clustered: bench/PROFILE.md, nineteenth pass). Only a minority is replaced: where most trials collapsed,
    telling them from the rest is what the GP has to learn. Without a chance level nothing is replaced."""
    if chance is None:
        return values, 0
    gain = (values - chance) * (1.0 if higher_is_better else -1.0)
    typical = float(np.median(gain))
    bad = gain < LEARNED_SHARE * typical
    if typical <= 0 or not bad.any() or 2 * bad.sum() >= len(values):
        return values, 0
    learned = values[~bad]
    worst = float(learned.min() if higher_is_better else learned.max())
    return np.where(bad, worst, values), int(bad.sum())


class CollapseAwareGPSampler(optuna.samplers.GPSampler):
    """Optuna's :class:`~optuna.samplers.GPSampler` whose model sees each complete trial that collapsed as the
    worst of the rest (see the module's docstring); one objective only, with a chance level."""

    def __init__(self, *, chance: float, higher_is_better: bool, **options: Any) -> None:
        if not callable(getattr(optuna.samplers.GPSampler, "_sample_relative_impl", None)):
            raise HpoError(
                f"optuna {optuna.__version__}'s GPSampler has no _sample_relative_impl, where hpo shows the GP "
                "collapsed trials as the worst of the rest; set sampler.collapsed: raw, or install optuna 5.x"
            )
        super().__init__(**options)
        self.chance, self.higher_is_better = chance, higher_is_better
        self.last_view: dict[str, Any] | None = None

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self.last_view = None  # set again below if this proposal saw a collapsed trial
        return super().sample_relative(study, trial, search_space)

    def _sample_relative_impl(
        self,
        study: optuna.Study,
        completed_trials: list[FrozenTrial],
        running_trials: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        values = np.array([t.values[0] for t in completed_trials], dtype=float)
        shown, n = sampler_values(values, self.chance, higher_is_better=self.higher_is_better)
        if n:
            self.last_view = {"collapsed_trials": n, "of": len(values), "shown_as": float(shown.min())}
            if not self.higher_is_better:
                self.last_view["shown_as"] = float(shown.max())
            viewed = []
            for t, v in zip(completed_trials, shown, strict=True):
                c = copy.copy(t)  # a shallow copy: the storage's trial keeps its value
                c.values = [float(v)]
                viewed.append(c)
            completed_trials = viewed
        return super()._sample_relative_impl(study, completed_trials, running_trials, search_space)


def last_view(sampler: optuna.samplers.BaseSampler) -> dict[str, Any] | None:
    """What the latest proposal of ``sampler`` (or of the sampler it wraps) saw as collapsed, if anything: the
    trial records it (``sampler_view``), so that a study says which of its proposals the view changed."""
    inner = getattr(sampler, "inner", sampler)
    return inner.last_view if isinstance(inner, CollapseAwareGPSampler) else None
