"""Small estimators that tuning and reporting both rely on, pure functions of numbers (the bottom layer).

* :func:`subset_weights` and :func:`expected_best`: the expected best of ``k`` trials drawn from the ``n`` that
  ran, by the unbiased estimator of Tang et al. (2020, "Showing your work doesn't always work"): with the scores
  sorted ascending, ``E[max of k] = sum_{i=k..n} C(i-1, k-1) / C(n, k) * v_(i)``.
* :func:`doubling_gain`: what the last doubling of trials bought, ``E[best of n] - E[best of n/2]``, the quantity
  the convergence rule of a ``trials: {until: settled}`` budget compares with its tolerance.
* :func:`doubling_gain_interval`: a percentile bootstrap interval of that gain over the trials (resampled with
  replacement, so a single lucky trial weighs what it should). The rule calls an architecture settled only when
  the whole interval lies under the tolerance: a small gain measured on few trials is not evidence of
  convergence (four trials can show a zero gain and an interval up to several times the tolerance).
* :func:`resolvable_gap`: the smallest true difference of means that a comparison of ``n`` seeds per side detects
  with the given power, at the level the report's verdict really uses: Holm over ``comparisons`` pairs, whose
  first and strictest step is Bonferroni's ``alpha / comparisons``. Normal approximation, two independent samples
  of a common spread ``sd``: ``(z(1 - a/2) + z(power)) * sd * sqrt(2 / n)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

__all__ = [
    "doubling_gain",
    "doubling_gain_interval",
    "expected_best",
    "resolvable_gap",
    "smallest_corrected_p",
    "subset_weights",
]


def subset_weights(n: int) -> np.ndarray:
    """``W[k-1, i-1]`` = P(the ``i``-th smallest of ``n`` scores is the largest of a random ``k``-subset)."""
    k = np.arange(1, n + 1)[:, None]
    i = np.arange(1, n + 1)[None, :]
    valid = i >= k
    with np.errstate(invalid="ignore"):
        log_w = (
            gammaln(i)
            - gammaln(k)
            - gammaln(np.where(valid, i - k + 1, 1))
            - (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))
        )
    return np.where(valid, np.exp(log_w), 0.0)


def expected_best(values: np.ndarray, k: int, *, higher_is_better: bool = True) -> float:
    """The expected best of ``k`` of the finite ``values`` drawn without replacement (Tang et al.)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be between 1 and the {len(x)} finite values, got {k}")
    sign = 1.0 if higher_is_better else -1.0
    return float(sign * (subset_weights(len(x))[k - 1] @ np.sort(sign * x)))


def _doubling_weights(n: int) -> np.ndarray:
    """Weights ``w`` with ``gain = w @ sort(sign * x)``: E[best of n] minus E[best of n // 2] as one linear map."""
    w = subset_weights(n)
    return w[n - 1] - w[n // 2 - 1]


def _finite(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def doubling_gain(values: np.ndarray, *, higher_is_better: bool = True) -> float:
    """How much better the expected best of all ``n`` finite values is than that of ``n // 2`` of them (positive
    is better, in the metric's units); NaN with fewer than two values."""
    x = _finite(values)
    if len(x) < 2:
        return float("nan")
    sign = 1.0 if higher_is_better else -1.0
    return float(_doubling_weights(len(x)) @ np.sort(sign * x))


def doubling_gain_interval(
    values: np.ndarray,
    *,
    higher_is_better: bool = True,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile bootstrap interval of :func:`doubling_gain` over the trials (NaN with fewer than four):
    ``n_boot`` resamples of the finite values with replacement, rounded at 1e-12 (a gain of 1e-16 is summation
    noise). Seeded, so that every worker and every report compute the same interval from the same trials."""
    x = _finite(values)
    if len(x) < 4:
        return (float("nan"), float("nan"))
    sign = 1.0 if higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    boot = np.sort(sign * rng.choice(x, (n_boot, len(x))), axis=1) @ _doubling_weights(len(x))
    tail = (1.0 - level) / 2
    lo, hi = np.round(np.quantile(boot, [tail, 1.0 - tail]), 12)
    return float(lo), float(hi)


def resolvable_gap(
    sd: float, n: int, *, comparisons: int = 1, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest difference of means ``n`` seeds per side detect with ``power`` at Holm's strictest level
    over ``comparisons`` pairs (``alpha / comparisons``), for a per-seed spread ``sd``."""
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    from scipy.stats import norm  # here, not at the top: every worker imports this module, few call this

    level = alpha / max(1, comparisons)
    z = float(norm.ppf(1 - level / 2) + norm.ppf(power))
    return z * sd * math.sqrt(2 / n)


def smallest_corrected_p(n_a: int, n_b: int, family: int = 1) -> float:
    """The smallest two-sided Mann-Whitney p-value samples of these sizes can give (complete separation, the
    same test the report's pairwise table runs), times the Holm family's size (the first step's multiplier),
    capped at 1: at or above the level, no pair can be separated whatever the data."""
    if n_a < 1 or n_b < 1:
        return 1.0
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(np.arange(n_a), np.arange(n_a, n_a + n_b), alternative="two-sided").pvalue)
    return min(1.0, p * max(1, family))
