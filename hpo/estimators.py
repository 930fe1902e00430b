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
* :func:`qn_scale` and :func:`seed_spread`: the spread between seeds that ``resolvable_gap`` is fed, measured on a
  handful of seeds where one collapsed run (a seed that learned nothing) must not stand for the typical seed
  noise: Rousseeuw and Croux's Qn (50% breakdown, finite-sample corrected) judges which seeds collapsed, the
  ordinary standard deviation of the others is the spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln

__all__ = [
    "COLLAPSE_SCALES",
    "SeedSpread",
    "doubling_gain",
    "doubling_gain_interval",
    "expected_best",
    "qn_scale",
    "resolvable_gap",
    "seed_spread",
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


# Qn's consistency constant at the normal, 1 / (sqrt(2) * Phi^-1(5/8)), and its finite-sample corrections (Croux
# and Rousseeuw 1992): a table up to 9 values, then n / (n + 1.4) for odd n, n / (n + 3.8) for even n.
# tests/test_estimators.py checks by simulation that the corrected estimate is unbiased at the normal.
_QN_D = 2.21914
_QN_SMALL = {2: 0.399, 3: 0.994, 4: 0.512, 5: 0.844, 6: 0.611, 7: 0.857, 8: 0.669, 9: 0.872}

# How far (in Qn scales) a seed must fall on the worse side of the median to count as collapsed. Qn from four
# values is itself noisy (relative sd ~0.5), so a lower threshold flags ordinary seeds: at 8, a sample of four
# normal seeds has one flagged about 1% of the time (one-sided), while a run that learned nothing sits hundreds of
# scales away (the census probe that motivated it: 0.197 against a spread of ~3e-4).
COLLAPSE_SCALES = 8.0


def qn_scale(values: np.ndarray) -> float:
    """Rousseeuw and Croux's Qn: the ``C(h, 2)``-th smallest of the pairwise distances ``|x_i - x_j|`` (``h =
    n // 2 + 1``), scaled to estimate the standard deviation of normal data without bias at every ``n``. Half the
    values can be arbitrarily wrong before it moves without bound (the sample sd: one). NaN under 2 values."""
    x = _finite(np.asarray(values, dtype=float))
    n = len(x)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, 1)
    h = n // 2 + 1
    k = h * (h - 1) // 2
    kth = float(np.partition(np.abs(x[i] - x[j]), k - 1)[k - 1])
    c = _QN_SMALL.get(n, n / (n + 1.4) if n % 2 else n / (n + 3.8))
    return _QN_D * c * kth


@dataclass(frozen=True)
class SeedSpread:
    """The spread between seeds of one configuration, and which seeds did not count in it and why."""

    sd: float  # the sample sd (ddof 1) of the seeds that neither failed nor collapsed; NaN under 2 of them
    values: list[float]  # every seed's value, in seed order (NaN: the seed failed)
    failed: list[int] = field(default_factory=list)  # seeds (positions) with no finite value
    collapsed: list[int] = field(default_factory=list)  # seeds far on the worse side of the others

    @property
    def used(self) -> int:
        return len(self.values) - len(self.failed) - len(self.collapsed)

    def describe(self) -> str:
        """One line for logs and reports: the spread, from how many seeds, and the seeds left out."""
        out = f"seed spread {self.sd:.3g} over {self.used} of {len(self.values)} seeds"
        if self.failed:
            out += f"; {len(self.failed)} failed (no value)"
        if self.collapsed:
            shown = ", ".join(f"{self.values[i]:.4g}" for i in self.collapsed)
            out += f"; {len(self.collapsed)} collapsed, left out ({shown})"
        return out


def seed_spread(
    values: Sequence[float], *, higher_is_better: bool = True, chance: float | None = None
) -> SeedSpread:
    """The per-seed spread of a configuration's score over a few seeds, for :func:`resolvable_gap`.

    A seed counts as *collapsed* when it learned nothing, scoring no better than ``chance`` (a constant output's
    score, e.g. an AUC of 0.5; within 1% of the way from chance to the median seed), or when it lies more than
    :data:`COLLAPSE_SCALES` Qn scales from the median of the others on the worse side: a run that diverged to a
    trivial solution says how often the configuration fails, not how far two healthy seeds differ, and one such
    run among four would set the spread (and every tolerance made from it) by itself. Qn tolerates just under
    half its values wrong, so two bad seeds of four (the census probe that showed it: 0.947, 0.947, 0.881, 0.500)
    need the chance level to find the one at 0.5, after which Qn finds the other. The spread is the ordinary
    sample sd of the rest (more efficient than Qn at the normal when nothing collapsed); :attr:`SeedSpread.used`
    says how many it rests on. Seeds without a finite value are *failed*."""
    x = np.asarray(list(values), dtype=float)
    finite = np.isfinite(x)
    failed = [int(i) for i in np.flatnonzero(~finite)]
    sign = 1.0 if higher_is_better else -1.0
    at_chance = np.zeros(len(x), bool)
    if chance is not None and finite.any():
        margin = 0.01 * max(0.0, sign * (float(np.median(x[finite])) - chance))
        at_chance = finite & (sign * (x - chance) <= margin)
    rest = finite & ~at_chance
    outliers = np.zeros(len(x), bool)
    if rest.sum() >= 3:
        scale = qn_scale(x[rest])
        worse = (np.median(x[rest]) - x) * sign
        if scale > 0:
            outliers = rest & (worse > COLLAPSE_SCALES * scale)
    collapsed = [int(i) for i in np.flatnonzero(at_chance | outliers)]
    keep = np.ones(len(x), bool)
    keep[failed + collapsed] = False
    sd = float(np.std(x[keep], ddof=1)) if keep.sum() >= 2 else float("nan")
    return SeedSpread(sd=sd, values=[float(v) for v in x], failed=failed, collapsed=collapsed)
