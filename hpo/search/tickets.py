"""Tickets: the fixed number of trials each architecture's study gets, queued once however many workers overlap.

A ticket is a WAITING trial tagged with its index (``ticket``); a study holds tickets ``0 .. n-1``, each owned by
at most one live trial, so any number of workers and relaunches run exactly ``n`` trials. The worker loop
(:mod:`hpo.search.runner` and :mod:`hpo.search.worker`) queue and claim them under the study's claim lock; ``hpo validate`` counts a grid
study's points with :func:`tickets_of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from hpo.config.study import StudySpec
from hpo.errors import ConfigError
from hpo.search.factories import grid_points
from hpo.storage import keys

__all__ = ["DONE", "LIVE", "ensure_tickets", "tickets_of"]

LIVE = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.RUNNING,
    optuna.trial.TrialState.WAITING,
)
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def ensure_tickets(
    study: optuna.Study,
    n: int,
    params: Sequence[dict[str, Any]] | None = None,
    attrs: Sequence[dict[str, Any]] | None = None,
) -> int:
    """Queue tickets ``0 .. n-1`` that have no live trial (none yet, or only failed ones); return how many.

    ``params[i]``, when given, fixes ticket ``i``'s parameters (a grid point); ``attrs[i]`` are its own
    attributes besides its index (a retrain chunk's seeds, a probed candidate)."""
    trials = study.get_trials(deepcopy=False)
    live = {keys.plain(t.user_attrs).get(keys.TICKET) for t in trials if t.state in LIVE}
    missing = [i for i in range(n) if i not in live]
    for i in missing:
        fixed = dict(params[i]) if params is not None else {}
        own = dict(attrs[i]) if attrs is not None else {}
        study.enqueue_trial(fixed, user_attrs=keys.tag({keys.TICKET: i, **own}), skip_if_exists=False)
    return len(missing)


def tickets_of(
    spec: StudySpec, arch: str, n_trials: int | None
) -> tuple[int | None, list[dict[str, Any]] | None]:
    """How many tickets an architecture's study gets, and their fixed parameters (grid studies only)."""
    if n_trials is not None and spec.budget_rule is not None:
        raise ConfigError(
            f"{spec.source}: trials is {{min: {spec.budget_rule.min}, max: {spec.budget_rule.max}, until: settled}}; "
            "--n-trials does not apply to it: change min or max in the study"
        )
    n = n_trials if n_trials is not None else spec.first_trials
    if spec.sampler.name != "grid":
        return n, None
    space = next(s for name, s in spec.spaces().items() if name == arch)
    points = grid_points([space, spec.optimizer_space_loaded()])
    if n is not None and n != len(points):
        raise ConfigError(
            f"{spec.source}: trials is {n}, but the grid of {arch} has {len(points)} points; "
            f"give trials: {len(points)} or leave it out"
        )
    return len(points), points
