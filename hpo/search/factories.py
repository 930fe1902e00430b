"""Samplers and pruners by name, with their options; impossible combinations are refused clearly."""

from __future__ import annotations

from typing import Any

import optuna

from hpo.errors import ConfigError
from hpo.search.spec import PrunerSpec, SamplerSpec

__all__ = ["make_pruner", "make_sampler"]


def make_sampler(
    spec: SamplerSpec, *, seed_offset: int = 0, multi_objective: bool = False
) -> optuna.samplers.BaseSampler:
    """``seed_offset`` differs per worker, so that workers sharing a study do not propose the same points."""
    seed = None if spec.seed is None else spec.seed + seed_offset
    opts: dict[str, Any] = dict(spec.options)
    try:
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
