"""Where the variance of a test score comes from (Bouthillier et al. 2021; the tuning playbook's trial, study and
data-sampling variance), by random-effects analysis of variance.

* A crossed retrain (``retrain.cross``) trains every initialisation seed with every data-order seed (and every
  draw of the held-out rows), one run per cell. Under the main-effects random model ``y = mu + a_init + b_data
  (+ c_split) + e`` (interactions cannot be separated from the residual with one run per cell, so they are pooled
  into it), the expected mean squares give the method-of-moments (ANOVA) estimators, e.g. for two factors
  ``var_init = (MS_init - MS_res) / n_data``, ``var_data = (MS_data - MS_res) / n_init``, ``var_res = MS_res``.
* Replicated tuning (``replicates``) gives groups of retrained seeds, one group per tuning run. With paired seeds
  (initialisation and data order vary together) the one-way random-effects model gives ``var_tuning =
  (MS_between - MS_within) / n0`` (``n0`` the effective group size of an unbalanced design): the variance that
  comes from which configuration the tuner chose, net of seed noise.
* Replicated tuning over a crossed retrain needs more care: every replicate is retrained on the same grid of
  ``I`` initialisation x ``D`` data-order seeds, so within a replicate the seeds are not independent draws (a row
  of the grid shares its initialisation effect). Within-replicate variance then understates seed noise and the
  one-way estimator is biased upwards by ``var_init (D - 1) / (ID - 1) + var_data (I - 1) / (ID - 1)`` (0.2 of
  both at 4 x 4). With the model ``y = mu + t_rep + a_init(rep) + b_data(rep) + e`` (each replicate's effects of
  its own, as a seed draws different weights for another configuration),
  ``E[MS_between] = n var_t + sum_f (n / L_f) var_f + var_res`` and ``E[MS_f] = var_res + (n / L_f) var_f``, so
  ``var_tuning = (MS_between - sum_f MS_f + (k - 1) MS_res) / n`` (``n`` cells per replicate, ``k`` factors,
  each ``MS_f`` and ``MS_res`` pooled over the replicates) is unbiased (:func:`replicated_crossed_components`;
  tests/report/test_variance.py checks it by simulation).
* Intervals: a parametric bootstrap of the same random-effects model, every component at its estimate (negative
  ones at 0), the data simulated again, the estimators applied again, the 2.5% and 97.5% percentiles of each.

Negative estimates (possible with method-of-moments) are set to 0 and said so. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CrossedComponents",
    "OneWayComponents",
    "ReplicatedComponents",
    "crossed_components",
    "crossed_intervals",
    "one_way_components",
    "one_way_interval",
    "replicated_crossed_components",
]

METHOD_CROSSED = (
    "random-effects ANOVA of the fully crossed design (main-effects model, interactions pooled into the residual; "
    "method-of-moments estimators from the expected mean squares, negative estimates set to 0)"
)
METHOD_REPLICATED = (
    "random-effects ANOVA of the replicates' crossed retrains (each replicate on the same seed grid): tuning "
    "= (MS between replicates - the sum of the pooled factor mean squares + (factors - 1) x the pooled residual "
    "mean square) / cells per replicate, unbiased where the one-way estimator would count part of the "
    "initialisation and data-order variance as tuning; 95% intervals by parametric bootstrap of the same model"
)
METHOD_ONE_WAY = (
    "one-way random-effects ANOVA of the retrained seeds grouped by tuning replicate (method of moments, "
    "negative estimate set to 0)"
)


@dataclass(frozen=True)
class CrossedComponents:
    """Variance of each factor's random effect (keyed by factor column), the residual's, each factor's number of
    levels, and the factors whose negative estimate was set to 0."""

    factors: dict[str, float]
    residual: float
    levels: dict[str, int]
    truncated: tuple[str, ...]
    mean_squares: dict[str, float] | None = None  # per factor, and "residual"

    @property
    def total(self) -> float:
        return sum(self.factors.values()) + self.residual


def crossed_components(
    frame: pd.DataFrame, factors: tuple[str, ...] = ("init_seed", "data_seed"), value: str = "value"
) -> CrossedComponents | None:
    """Variance components of ``value`` over a fully crossed design of ``factors`` with one run per cell (main-
    effects random model: ``MS_f = (N / L_f) * sum (mean_l - grand)^2 / (L_f - 1)``, ``E[MS_f] = var_res +
    (N / L_f) var_f``); None unless every combination of at least two levels of each factor was run exactly once."""
    levels = {f: int(frame[f].nunique()) for f in factors}
    n = len(frame)
    if min(levels.values(), default=0) < 2 or n != int(np.prod(list(levels.values()))):
        return None
    if frame.duplicated(list(factors)).any():
        return None
    y = frame[value].to_numpy(dtype=float)
    grand = y.mean()
    fitted = np.full(n, grand)
    ms = {}
    for f in factors:
        means = frame.groupby(f)[value].transform("mean").to_numpy(dtype=float)
        fitted += means - grand
        ms[f] = (
            (n / levels[f])
            * np.sum((frame.groupby(f)[value].mean().to_numpy() - grand) ** 2)
            / (levels[f] - 1)
        )
    df_res = n - 1 - sum(levels[f] - 1 for f in factors)
    ms_res = float(np.sum((y - fitted) ** 2) / df_res)
    raw = {f: (ms[f] - ms_res) / (n / levels[f]) for f in factors}
    truncated = tuple(f for f, v in raw.items() if v < 0)
    return CrossedComponents(
        {f: max(float(v), 0.0) for f, v in raw.items()},
        ms_res,
        levels,
        truncated,
        {**{f: float(v) for f, v in ms.items()}, "residual": ms_res},
    )


@dataclass(frozen=True)
class OneWayComponents:
    between: float
    within: float
    groups: int
    n0: float
    truncated: bool


def one_way_components(groups: list[np.ndarray]) -> OneWayComponents | None:
    """Between-group and within-group variance of a one-way random-effects design; None with fewer than two
    groups of at least two values."""
    gs = [np.asarray(g, dtype=float)[np.isfinite(g)] for g in groups]
    gs = [g for g in gs if len(g) >= 1]
    sizes = np.array([len(g) for g in gs])
    if len(gs) < 2 or sizes.sum() - len(gs) < 1:
        return None
    n = sizes.sum()
    grand = np.concatenate(gs).mean()
    ms_between = sum(len(g) * (g.mean() - grand) ** 2 for g in gs) / (len(gs) - 1)
    ms_within = sum(((g - g.mean()) ** 2).sum() for g in gs) / (n - len(gs))
    n0 = (n - (sizes**2).sum() / n) / (len(gs) - 1)
    raw = (ms_between - ms_within) / n0
    return OneWayComponents(max(float(raw), 0.0), float(ms_within), len(gs), float(n0), bool(raw < 0))


@dataclass(frozen=True)
class ReplicatedComponents:
    """Tuning, factor and residual variances of replicated tuning over a crossed retrain, each with its 95%
    parametric-bootstrap interval; ``raw_tuning`` is the estimate before a negative value is set to 0."""

    tuning: float
    raw_tuning: float
    factors: dict[str, float]
    residual: float
    levels: dict[str, int]
    replicates: int
    intervals: dict[str, tuple[float, float]]
    truncated: tuple[str, ...]


def _ms_arrays(y: np.ndarray, k: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """For ``y`` of shape ``(..., R, L1, .., Lk)``: MS between replicates (over replicate means, times the cells
    per replicate), each factor's MS and the residual MS of the main-effects model, pooled over replicates."""
    fac_axes = tuple(range(y.ndim - k, y.ndim))
    levels = y.shape[y.ndim - k :]
    n = int(np.prod(levels))
    reps = y.shape[y.ndim - k - 1]
    rep_mean = y.mean(axis=fac_axes, keepdims=True)
    grand = rep_mean.mean(axis=y.ndim - k - 1, keepdims=True)
    spread = n * ((rep_mean - grand) ** 2).sum(axis=(y.ndim - k - 1, *fac_axes))
    ms_between = spread / (reps - 1) if reps > 1 else np.full(spread.shape, np.nan)
    fitted = np.broadcast_to(rep_mean, y.shape).copy()
    ms_f = []
    for j, ax in enumerate(fac_axes):
        others = tuple(a for a in fac_axes if a != ax)
        m = y.mean(axis=others, keepdims=True) - rep_mean
        fitted = fitted + m
        ms_f.append((n / levels[j]) * (m**2).sum(axis=(y.ndim - k - 1, *fac_axes)) / (reps * (levels[j] - 1)))
    df_res = reps * (n - 1 - sum(lv - 1 for lv in levels))
    ms_res = ((y - fitted) ** 2).sum(axis=(y.ndim - k - 1, *fac_axes)) / df_res
    return ms_between, ms_f, ms_res


def _components(
    ms_between: np.ndarray, ms_f: list[np.ndarray], ms_res: np.ndarray, levels: tuple[int, ...]
) -> tuple[np.ndarray, list[np.ndarray]]:
    n = int(np.prod(levels))
    tuning = (ms_between - sum(ms_f) + (len(ms_f) - 1) * ms_res) / n
    return tuning, [(m - ms_res) / (n / lv) for m, lv in zip(ms_f, levels, strict=True)]


def replicated_crossed_components(
    groups: list[pd.DataFrame],
    factors: tuple[str, ...] = ("init_seed", "data_seed"),
    value: str = "value",
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> ReplicatedComponents | None:
    """Variance components of replicated tuning (one frame per replicate) over the same fully crossed grid of
    ``factors`` (one run per cell); None unless there are two or more replicates, each a complete grid of the
    same levels. See the module docstring for the model and the estimator."""
    grids = []
    for g in groups:
        if g.duplicated(list(factors)).any():
            return None
        grids.append(g.set_index(list(factors))[value].sort_index())
    if len(grids) < 2:
        return None
    index = grids[0].index
    levels = tuple(int(index.get_level_values(f).nunique()) for f in factors)
    if min(levels) < 2 or len(index) != int(np.prod(levels)):
        return None
    if any(not g.index.equals(index) for g in grids[1:]):
        return None
    y = np.stack([g.to_numpy(dtype=float).reshape(levels) for g in grids])
    if not np.isfinite(y).all():
        return None
    k = len(factors)
    msb, msf, msr = _ms_arrays(y, k)
    tuning, comps = _components(msb, msf, msr, levels)
    est = {"tuning": float(tuning), **{f: float(c) for f, c in zip(factors, comps, strict=True)}}
    est["residual"] = float(msr)
    kept = {name: max(v, 0.0) for name, v in est.items()}
    # parametric bootstrap: simulate the model at the (non-negative) estimates and estimate again
    sim = _simulate(np.random.default_rng(seed), n_boot, len(grids), levels, kept, factors)
    bmsb, bmsf, bmsr = _ms_arrays(sim, k)
    btuning, bcomps = _components(bmsb, bmsf, bmsr, levels)
    draws = {"tuning": btuning, **dict(zip(factors, bcomps, strict=True)), "residual": bmsr}
    intervals = {name: _interval(d) for name, d in draws.items()}
    return ReplicatedComponents(
        tuning=kept["tuning"],
        raw_tuning=est["tuning"],
        factors={f: kept[f] for f in factors},
        residual=kept["residual"],
        levels=dict(zip(factors, levels, strict=True)),
        replicates=len(grids),
        intervals=intervals,
        truncated=tuple(name for name, v in est.items() if v < 0),
    )


def _simulate(
    rng: np.random.Generator,
    n_boot: int,
    reps: int,
    levels: tuple[int, ...],
    var: dict[str, float],
    factors: tuple[str, ...],
) -> np.ndarray:
    """``n_boot`` draws of ``(reps, *levels)`` from the model at the variances ``var`` (each at least 0)."""
    k = len(levels)
    sim = rng.normal(0.0, np.sqrt(max(var.get("tuning", 0.0), 0.0)), (n_boot, reps) + (1,) * k)
    for j, f in enumerate(factors):
        shape = [n_boot, reps] + [1] * k
        shape[2 + j] = levels[j]
        sim = sim + rng.normal(0.0, np.sqrt(max(var[f], 0.0)), tuple(shape))
    return sim + rng.normal(0.0, np.sqrt(max(var["residual"], 0.0)), (n_boot, reps, *levels))


def crossed_intervals(
    c: CrossedComponents, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% parametric-bootstrap intervals of one crossed design's components (keyed by factor and
    ``residual``)."""
    factors = tuple(c.factors)
    levels = tuple(c.levels[f] for f in factors)
    sim = _simulate(
        np.random.default_rng(seed), n_boot, 1, levels, {**c.factors, "residual": c.residual}, factors
    )
    _, msf, msr = _ms_arrays(sim, len(factors))
    _, comps = _components(np.zeros_like(msr), msf, msr, levels)
    draws = {**dict(zip(factors, comps, strict=True)), "residual": msr}
    return {name: _interval(d) for name, d in draws.items()}


def one_way_interval(
    c: OneWayComponents, sizes: list[int], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% parametric-bootstrap intervals of the one-way components (``between`` and ``within``) for groups of
    ``sizes``."""
    rng = np.random.default_rng(seed)
    between, within = [], []
    for _ in range(n_boot):
        groups = [rng.normal(rng.normal(0, np.sqrt(c.between)), np.sqrt(c.within), n) for n in sizes]
        b = one_way_components(groups)
        if b is not None:
            between.append(b.between)
            within.append(b.within)
    return {"between": _interval(np.asarray(between)), "within": _interval(np.asarray(within))}


def _interval(draws: np.ndarray) -> tuple[float, float]:
    lo, hi = np.maximum(np.quantile(draws, [0.025, 0.975]), 0.0)
    return float(lo), float(hi)
