"""Statistics over seeds (science.md section 6): pure functions on arrays, an explicit random state for every
bootstrap, and nothing that draws.

``higher_is_better`` says which way a metric points (AUC: up; MSE: down), so that "A beats B" always means better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

__all__ = [
    "PairComparison",
    "Summary",
    "bootstrap_ci",
    "compare_pairs",
    "holm",
    "iqm",
    "probability_of_improvement",
    "summarise",
]


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (robust to a few bad seeds, less noisy than the median)."""
    return float(sps.trim_mean(np.asarray(x, dtype=float), 0.25))


def bootstrap_ci(
    x: np.ndarray, stat: str = "mean", *, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (mean, median or iqm) over seeds."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return (float("nan"), float("nan"))
    fns: dict[str, Callable[[np.ndarray], Any]] = {"mean": np.mean, "median": np.median, "iqm": iqm}
    fn = fns[stat]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_resamples, len(x)))
    boots = np.array([fn(x[i]) for i in idx])
    a = (1 - level) / 2
    return float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


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


def compare_pairs(
    samples: dict[str, np.ndarray],
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
    paired: bool = False,
) -> list[PairComparison]:
    """Every ordered pair (A, B), A listed before B: P(A beats B) with a bootstrap interval, and a two-sided
    Mann-Whitney U test, Holm-corrected over all pairs.

    ``paired``: the samples are aligned, element i of every architecture measured on the same run i (the same
    freshly drawn dataset): P(A beats B) is then the share of runs that A wins, the interval resamples runs, and
    the test is Wilcoxon's signed-rank test. Pairing removes the run-to-run variance of the data from the
    comparison, which otherwise dominates it."""
    names = list(samples)
    rng = np.random.default_rng(seed)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x, y = np.asarray(samples[a], float), np.asarray(samples[b], float)
            if paired:
                if len(x) != len(y):
                    raise ValueError(f"paired samples of {a} and {b} differ in length ({len(x)}, {len(y)})")
                ok = np.isfinite(x) & np.isfinite(y)
                x, y = x[ok], y[ok]
                if len(x) < 2:
                    rows.append((a, b, float("nan"), float("nan"), float("nan"), 1.0))
                    continue
                d = (x - y) if higher_is_better else (y - x)
                wins = (d > 0) + 0.5 * (d == 0)
                idx = rng.integers(0, len(d), size=(n_resamples, len(d)))
                boots = wins[idx].mean(axis=1)
                pv = float(sps.wilcoxon(x, y).pvalue) if np.any(d != 0) else 1.0
                lo, hi = float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
                rows.append((a, b, float(wins.mean()), lo, hi, pv))
                continue
            x, y = x[np.isfinite(x)], y[np.isfinite(y)]
            if len(x) < 2 or len(y) < 2:
                rows.append((a, b, float("nan"), float("nan"), float("nan"), 1.0))
                continue
            p = probability_of_improvement(x, y, higher_is_better=higher_is_better)
            boots = [
                probability_of_improvement(
                    x[rng.integers(0, len(x), len(x))],
                    y[rng.integers(0, len(y), len(y))],
                    higher_is_better=higher_is_better,
                )
                for _ in range(n_resamples)
            ]
            pv = float(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue)
            rows.append((a, b, p, float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)), pv))
    adjusted = holm([r[5] for r in rows]) if rows else []
    return [
        PairComparison(a, b, p, lo, hi, pv, ph, ph < alpha)
        for (a, b, p, lo, hi, pv), ph in zip(rows, adjusted, strict=True)
    ]
