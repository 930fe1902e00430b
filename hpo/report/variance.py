"""Where the variance of a test score comes from (Bouthillier et al. 2021; the tuning playbook's trial, study and
data-sampling variance), by random-effects analysis of variance.

* A crossed retrain (``retrain.cross``) trains every initialisation seed with every data-order seed (and every
  draw of the held-out rows), one run per cell. Under the main-effects random model ``y = mu + a_init + b_data
  (+ c_split) + e`` (interactions cannot be separated from the residual with one run per cell, so they are pooled
  into it), the expected mean squares give the method-of-moments (ANOVA) estimators, e.g. for two factors
  ``var_init = (MS_init - MS_res) / n_data``, ``var_data = (MS_data - MS_res) / n_init``, ``var_res = MS_res``.
* Replicated tuning (``replicates``) gives groups of retrained seeds, one group per tuning run. The one-way random-
  effects model gives ``var_tuning = (MS_between - MS_within) / n0`` (``n0`` the effective group size of an
  unbalanced design): the variance that comes from which configuration the tuner chose, net of seed noise.

Negative estimates (possible with method-of-moments) are set to 0 and said so. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["CrossedComponents", "OneWayComponents", "crossed_components", "one_way_components"]

METHOD_CROSSED = (
    "random-effects ANOVA of the fully crossed design (main-effects model, interactions pooled into the residual; "
    "method-of-moments estimators from the expected mean squares, negative estimates set to 0)"
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
    return CrossedComponents({f: max(float(v), 0.0) for f, v in raw.items()}, ms_res, levels, truncated)


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
