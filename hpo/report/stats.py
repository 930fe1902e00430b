"""Statistics over seeds (docs/science.md, what a comparison must say): pure functions on arrays, an explicit
random state for every bootstrap, and nothing that draws.

``higher_is_better`` says which way a metric points (AUC: up; MSE: down), so that "A beats B" always means better.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

__all__ = [
    "PairComparison",
    "RankSummary",
    "Summary",
    "bootstrap_ci",
    "compare_pairs",
    "difference_ci",
    "holm",
    "holm_over",
    "iqm",
    "nemenyi_cd",
    "probability_of_improvement",
    "rank_summary",
    "sign_test",
    "summarise",
]


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (robust to a few bad seeds, less noisy than the median)."""
    return float(sps.trim_mean(np.asarray(x, dtype=float), 0.25))


def _iqm_axis(x: np.ndarray, axis: int = -1) -> Any:
    return sps.trim_mean(x, 0.25, axis=axis)


STATISTICS: dict[str, Callable[..., Any]] = {"mean": np.mean, "median": np.median, "iqm": _iqm_axis}


def bootstrap_ci(
    x: np.ndarray, stat: str = "mean", *, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of ``stat`` (mean, median or iqm) over seeds at ``level``: SciPy's BCa interval (bias-
    corrected and accelerated), or the percentile interval where BCa is not defined (a statistic that does not
    vary over the jackknife, e.g. the median of a few seeds). Constant data give the point itself."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.bootstrap(
                (x,), STATISTICS[stat], confidence_level=level, n_resamples=n_resamples, method=method,
                random_state=np.random.default_rng(seed), vectorized=True,
            )  # fmt: skip
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            return lo, hi
    return (float("nan"), float("nan"))


def difference_ci(
    x: np.ndarray, y: np.ndarray, *, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of ``mean(x) - mean(y)`` for two independent samples (each resampled on its own):
    SciPy's BCa interval, or the percentile one where BCa is undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return (float("nan"), float("nan"))

    def diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> Any:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.bootstrap(
                (x, y), diff, confidence_level=level, n_resamples=n_resamples, method=method,
                random_state=np.random.default_rng(seed), vectorized=True,
            )  # fmt: skip
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            return lo, hi
    d = float(x.mean() - y.mean())
    return (d, d)


def sign_test(d: np.ndarray) -> float:
    """Two-sided sign test of "A wins as often as B" on paired differences ``d`` (ties dropped): the test that
    matches a reported share of wins. 8 wins in 10 gives p = 112/1024 = 0.109."""
    d = np.asarray(d, dtype=float)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    if wins + losses == 0:
        return 1.0
    return float(sps.binomtest(wins, wins + losses, 0.5).pvalue)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    median: float
    iqm: float
    ci_low: float
    ci_high: float


def summarise(x: Sequence[float] | np.ndarray, *, seed: int = 0) -> Summary:
    a = np.asarray(x, dtype=float)
    a = a[np.isfinite(a)]
    if len(a) == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, nan, nan)
    lo, hi = bootstrap_ci(a, "mean", seed=seed)
    return Summary(
        len(a),
        float(a.mean()),
        float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        float(np.median(a)),
        iqm(a),
        lo,
        hi,
    )


def probability_of_improvement(a: np.ndarray, b: np.ndarray, *, higher_is_better: bool = True) -> float:
    """P(A beats B) for one random seed of each: the Mann-Whitney U statistic over all pairs, ties counting half."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not higher_is_better:
        a, b = -a, -b
    diff = a[:, None] - b[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def resampled_probabilities(
    x: np.ndarray, y: np.ndarray, ix: np.ndarray, iy: np.ndarray, *, higher_is_better: bool = True
) -> np.ndarray:
    """:func:`probability_of_improvement` of every bootstrap resample ``(x[ix[r]], y[iy[r]])`` at once.

    Each resample is the original values with multiplicities, so P = sum_i a_i (#{resampled y < x_i} +
    #{resampled y = x_i} / 2) / (n m), with a_i the multiplicity of x_i; the counts are cumulative sums over
    sorted y. O(R (n + m)) instead of R n m comparisons: a report of 10 architectures x 400 seeds took minutes."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not higher_is_better:
        x, y = -x, -y
    r, n, m = ix.shape[0], len(x), len(y)
    order = np.argsort(y, kind="stable")
    position = np.empty(m, dtype=np.int64)
    position[order] = np.arange(m)
    offsets = (np.arange(r) * m)[:, None]
    w = np.bincount((position[iy] + offsets).ravel(), minlength=r * m).reshape(r, m)
    cum = np.concatenate([np.zeros((r, 1)), np.cumsum(w, axis=1)], axis=1)
    ys = y[order]
    left, right = np.searchsorted(ys, x, "left"), np.searchsorted(ys, x, "right")
    per_x = cum[:, left] + 0.5 * (cum[:, right] - cum[:, left])  # (R, n): resampled y below x_i, ties half
    a = np.bincount((ix + (np.arange(r) * n)[:, None]).ravel(), minlength=r * n).reshape(r, n)
    return np.asarray((a * per_x).sum(axis=1) / (n * m))


@dataclass(frozen=True)
class PairComparison:
    a: str
    b: str
    p_a_beats_b: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    significant: bool
    test: str = "Mann-Whitney U"
    family: int = 1  # how many tests the Holm correction was over


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


def holm_over(rows: Sequence[PairComparison], alpha: float = 0.05) -> list[PairComparison]:
    """``rows`` Holm-corrected as one family (the caller decides the family, and says which)."""
    adjusted = holm([r.p_value for r in rows]) if rows else []
    return [
        dataclasses.replace(r, p_holm=ph, significant=ph < alpha, family=len(rows))
        for r, ph in zip(rows, adjusted, strict=True)
    ]


def _paired(x: np.ndarray, y: np.ndarray, higher: bool, level: float, n_resamples: int, seed: int) -> tuple:
    """Share of runs A wins (ties half), its bootstrap interval over runs, and the sign test of that share."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return (float("nan"), float("nan"), float("nan"), 1.0)
    d = (x - y) if higher else (y - x)
    wins = (d > 0) + 0.5 * (d == 0)
    lo, hi = bootstrap_ci(wins, "mean", level=level, n_resamples=n_resamples, seed=seed)
    return (float(wins.mean()), lo, hi, sign_test(d))


def _unpaired(x: np.ndarray, y: np.ndarray, higher: bool, level: float, n_resamples: int, seed: int) -> tuple:
    """P(A beats B) for one random seed of each, its two-sample bootstrap interval, and Mann-Whitney's U test
    (whose statistic is that probability)."""
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        return (float("nan"), float("nan"), float("nan"), 1.0)
    rng = np.random.default_rng(seed)
    draws = [(rng.integers(0, len(x), len(x)), rng.integers(0, len(y), len(y))) for _ in range(n_resamples)]
    ix, iy = np.stack([i for i, _ in draws]), np.stack([j for _, j in draws])
    boots = resampled_probabilities(x, y, ix, iy, higher_is_better=higher)
    a = (1 - level) / 2
    p = probability_of_improvement(x, y, higher_is_better=higher)
    pv = float(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue)
    return (p, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)), pv)


def compare_pairs(
    samples: dict[str, np.ndarray],
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    paired: bool = False,
) -> list[PairComparison]:
    """Every pair (A, B), A listed before B: the effect, its bootstrap interval at ``level``, a test of that same
    effect, and Holm's correction over these pairs (use :func:`holm_over` for a wider family).

    Unpaired: P(A beats B) for one random seed of each, tested with Mann-Whitney's U (the same quantity).
    ``paired``: element i of every architecture was measured on the same run i (the same freshly drawn dataset):
    the effect is the share of runs A wins, tested with the sign test (ties dropped); pairing removes the
    run-to-run variance of the data, which otherwise dominates the comparison."""
    names = list(samples)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x, y = np.asarray(samples[a], float), np.asarray(samples[b], float)
            if paired and len(x) != len(y):
                raise ValueError(f"paired samples of {a} and {b} differ in length ({len(x)}, {len(y)})")
            fn = _paired if paired else _unpaired
            p, lo, hi, pv = fn(x, y, higher_is_better, level, n_resamples, seed)
            test = "sign test" if paired else "Mann-Whitney U"
            rows.append(PairComparison(a, b, p, lo, hi, pv, pv, pv < alpha, test))
    return holm_over(rows, alpha)


@dataclass(frozen=True)
class RankSummary:
    """Mean ranks of ``k`` methods over ``n`` blocks, Friedman's test and the Nemenyi critical difference (Demsar,
    JMLR 2006): two methods whose mean ranks differ by less than ``cd`` are not distinguished at ``alpha``."""

    names: tuple[str, ...]
    mean_ranks: tuple[float, ...]
    blocks: int
    friedman_statistic: float
    friedman_p: float
    cd: float
    alpha: float

    def groups(self) -> list[tuple[str, ...]]:
        """Maximal runs of methods (in rank order) whose mean ranks lie within ``cd`` of each other."""
        order = sorted(range(len(self.names)), key=lambda i: self.mean_ranks[i])
        out: list[tuple[str, ...]] = []
        for start, i in enumerate(order):
            run = [j for j in order[start:] if self.mean_ranks[j] - self.mean_ranks[i] < self.cd]
            group = tuple(self.names[j] for j in run)
            if len(group) > 1 and not any(set(group) <= set(g) for g in out):
                out.append(group)
        return out


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """``q_alpha * sqrt(k (k + 1) / (6 n))`` with ``q_alpha`` the studentized range quantile over sqrt(2)
    (Demsar 2006, Table 5a: 2.569 for k = 4 at alpha = 0.05)."""
    q = float(sps.studentized_range.ppf(1 - alpha, k, np.inf)) / np.sqrt(2)
    return q * float(np.sqrt(k * (k + 1) / (6.0 * n)))


def rank_summary(
    scores: np.ndarray, names: Sequence[str], higher_is_better: Sequence[bool] | bool, alpha: float = 0.05
) -> RankSummary:
    """``scores`` ``(n blocks, k methods)``: rank 1 is the best in each block (ties get their average rank);
    ``higher_is_better`` per block or for all. Friedman's chi-square test of equal mean ranks."""
    scores = np.asarray(scores, dtype=float)
    n, k = scores.shape
    hib = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), (n,))
    signed = np.where(hib[:, None], -scores, scores)
    ranks = sps.rankdata(signed, axis=1)
    mean = ranks.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * float(np.sum(mean**2) - k * (k + 1) ** 2 / 4)
    p = float(sps.chi2.sf(chi2, k - 1)) if k > 1 else 1.0
    return RankSummary(
        tuple(names), tuple(float(m) for m in mean), n, chi2, p, nemenyi_cd(k, n, alpha), alpha
    )
