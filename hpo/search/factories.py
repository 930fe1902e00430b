"""Samplers and pruners by name, with their options; impossible combinations are refused clearly."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import optuna

from hpo.config.space import SearchSpace
from hpo.config.study import PrunerSpec, SamplerSpec
from hpo.errors import ConfigError
from hpo.search.collapse import CollapseAwareGPSampler
from hpo.storage.claims import worker_seed

__all__ = ["grid_points", "make_pruner", "make_sampler"]


def make_sampler(
    spec: SamplerSpec,
    *,
    worker_id: int | None = None,
    multi_objective: bool = False,
    chance: float | None = None,
    higher_is_better: bool = True,
) -> optuna.samplers.BaseSampler:
    """The sampler of one worker process. ``worker_id`` is the id the database gave the process
    (:func:`hpo.storage.claims.register_worker`): its seed is derived from the study's seed and that id, so workers
    sharing a study, and every restart, propose different points. Without it, the study's own seed is used.
    With ``collapsed: worst``, one objective and its ``chance`` level, the GP sees a collapsed trial (one that
    learned far less than the typical trial over chance) as the worst of the rest (:mod:`hpo.search.collapse`)."""
    seed = spec.seed if worker_id is None else worker_seed(spec.seed, worker_id)
    opts: dict[str, Any] = dict(spec.options)
    try:
        if spec.name == "gp" and spec.collapsed == "worst" and chance is not None and not multi_objective:
            return CollapseAwareGPSampler(chance=chance, higher_is_better=higher_is_better, seed=seed, **opts)
        if spec.name == "gp":
            return optuna.samplers.GPSampler(seed=seed, **opts)
        if spec.name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **opts)
        if spec.name == "random":
            return optuna.samplers.RandomSampler(seed=seed, **opts)
        if spec.name == "cmaes":
            if multi_objective:
                raise ConfigError(
                    "sampler 'cmaes' does not support multi-objective studies; use gp, tpe or random"
                )
            return optuna.samplers.CmaEsSampler(seed=seed, **opts)
        if spec.name == "grid":
            # every grid point is carried by its ticket (see grid_points); nothing is left to sample
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.QMCSampler(seed=seed, **opts)
    except TypeError as exc:
        raise ConfigError(f"sampler {spec.name}: bad option ({exc})") from None


def make_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    opts = dict(spec.options)
    try:
        if spec.name == "none":
            return optuna.pruners.NopPruner()
        if spec.name == "median":
            return optuna.pruners.MedianPruner(**opts)
        if spec.name == "hyperband":
            return optuna.pruners.HyperbandPruner(**opts)
        return optuna.pruners.SuccessiveHalvingPruner(**opts)
    except TypeError as exc:
        raise ConfigError(f"pruner {spec.name}: bad option ({exc})") from None


def grid_points(spaces: Sequence[SearchSpace]) -> list[dict[str, Any]]:
    """Every combination of the categorical choices of ``spaces``, in a fixed order: ticket ``i`` runs point ``i``.

    Optuna's own ``GridSampler`` refuses enqueued trials without parameters, and our tickets are enqueued trials;
    carrying the point on the ticket also makes the assignment of points to tickets exact under many workers.
    """
    names: list[str] = []
    choices: list[list[Any]] = []
    for space in spaces:
        for name, r in space.params.items():
            if r.type != "categorical" or not r.choices:
                raise ConfigError(
                    f"{space.source}: params.{name} is {r.type}; the grid sampler needs categorical "
                    "parameters (type: categorical, choices: [...])"
                )
            names.append(name)
            choices.append(list(r.choices))
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]
