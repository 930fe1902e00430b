"""Where the variance of a test score comes from (Bouthillier et al. 2021; the tuning playbook's trial, study and
data-sampling variance), by random-effects analysis of variance.

* A crossed retrain (``retrain.cross``) trains every initialisation seed with every data-order seed, one run per
  cell. Under the main-effects random model ``y = mu + a_init + b_data + e`` (the interaction cannot be separated
  from the residual with one run per cell, so it is pooled into it), the expected mean squares give the method-of-
  moments (ANOVA) estimators ``var_init = (MS_init - MS_res) / n_data``, ``var_data = (MS_data - MS_res) / n_init``,
  ``var_res = MS_res``.
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
    "two-way random-effects ANOVA of the crossed init x data-order design (main-effects model, interaction pooled "
    "into the residual; method-of-moments estimators, negative estimates set to 0)"
)
METHOD_ONE_WAY = (
    "one-way random-effects ANOVA of the retrained seeds grouped by tuning replicate (method of moments, "
    "negative estimate set to 0)"
)


@dataclass(frozen=True)
class CrossedComponents:
    init: float
    data: float
    residual: float
    n_init: int
    n_data: int
    truncated: tuple[str, ...]

    @property
    def total(self) -> float:
        return self.init + self.data + self.residual


def crossed_components(frame: pd.DataFrame, value: str = "value") -> CrossedComponents | None:
    """Variance components of ``value`` over the crossed cells (``init_seed``, ``data_seed``) of ``frame``; None
    unless every init seed was run with every data seed (at least 2 x 2), one run per cell."""
    grid = frame.pivot_table(index="init_seed", columns="data_seed", values=value, aggfunc="mean")
    counts = frame.groupby(["init_seed", "data_seed"]).size()
    if grid.shape[0] < 2 or grid.shape[1] < 2 or grid.isna().any().any() or (counts != 1).any():
        return None
    y = grid.to_numpy(dtype=float)
    n_i, n_d = y.shape
    grand = y.mean()
    rows, cols = y.mean(axis=1), y.mean(axis=0)
    ms_init = n_d * np.sum((rows - grand) ** 2) / (n_i - 1)
    ms_data = n_i * np.sum((cols - grand) ** 2) / (n_d - 1)
    resid = y - rows[:, None] - cols[None, :] + grand
    ms_res = np.sum(resid**2) / ((n_i - 1) * (n_d - 1))
    raw = {"init": (ms_init - ms_res) / n_d, "data": (ms_data - ms_res) / n_i}
    truncated = tuple(k for k, v in raw.items() if v < 0)
    return CrossedComponents(max(raw["init"], 0.0), max(raw["data"], 0.0), float(ms_res), n_i, n_d, truncated)


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
