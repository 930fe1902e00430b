"""Expected best validation score against the number of trials ("Show your work", Dodge et al. 2019).

Given the ``n`` validation scores of a tuning run, the expected best of ``k`` of them drawn at random is estimated
without bias by the estimator of Tang et al. (2020, "Showing your work doesn't always work"): sort the scores
ascending, ``v_(1) <= ... <= v_(n)``; then

    E[max of k] = sum_{i=k..n} C(i-1, k-1) / C(n, k) * v_(i)

(the probability that ``v_(i)`` is the largest of a random ``k``-subset drawn without replacement). Dodge et al.'s
original estimator samples with replacement and is biased upwards for ``k`` near ``n``. The curve answers "what
would a study of ``k`` trials have found", for trials that are exchangeable (random search). For a model-based
sampler (GP, TPE) the trials are not exchangeable: the curve then describes a random ``k``-subset of the trials
that were run, not a ``k``-trial run of that sampler, and the observed best-so-far (:func:`best_so_far`) is the
honest counterpart. Pure functions; every bootstrap takes its random state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpo.estimators import subset_weights

__all__ = ["Crossing", "ExpectedMax", "best_so_far", "crossings", "expected_max", "subset_weights"]


@dataclass(frozen=True)
class ExpectedMax:
    """The curve for ``k = 1 .. n`` with its bootstrap band (resampling the trials)."""

    k: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_trials: int


def expected_max(
    values: np.ndarray,
    *,
    higher_is_better: bool = True,
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> ExpectedMax:
    """The expected best of ``k`` trials for every ``k`` up to the number of finite ``values``; for a metric
    where lower is better, the expected minimum. The band is the percentile bootstrap over the trials at
    ``level``: it says how much the curve would move with another set of trials of the same kind."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        empty = np.array([], dtype=float)
        return ExpectedMax(np.array([], dtype=int), empty, empty, empty, 0)
    sign = 1.0 if higher_is_better else -1.0
    w = subset_weights(len(x))
    mean = sign * (w @ np.sort(sign * x))
    rng = np.random.default_rng(seed)
    boot = np.sort(sign * rng.choice(x, size=(n_resamples, len(x)), replace=True), axis=1)
    curves = sign * (boot @ w.T)
    tail = (1 - level) / 2
    low, high = np.quantile(curves, [tail, 1 - tail], axis=0)
    if not higher_is_better:
        low, high = np.minimum(low, high), np.maximum(low, high)
    return ExpectedMax(np.arange(1, len(x) + 1), mean, low, high, len(x))


def best_so_far(values_in_order: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """The best score after each trial, in the order the trials ran (NaN before the first finite one)."""
    x = np.asarray(values_in_order, dtype=float)
    filled = np.where(np.isfinite(x), x, -np.inf if higher_is_better else np.inf)
    run = np.maximum.accumulate(filled) if higher_is_better else np.minimum.accumulate(filled)
    return np.where(np.isfinite(run), run, np.nan)


@dataclass(frozen=True)
class Crossing:
    """``before`` looks better with fewer than ``k`` trials; ``after`` from ``k`` trials on."""

    k: int
    before: str
    after: str

    def sentence(self) -> str:
        return f"with fewer than {self.k} trials, {self.before} looks better; from {self.k} on, {self.after}"


def crossings(curves: dict[str, np.ndarray], *, higher_is_better: bool = True) -> list[Crossing]:
    """Every budget ``k`` at which two architectures' expected-best curves change order (over the ``k`` both
    reach); ties do not count as a change."""
    out = []
    names = list(curves)
    sign = 1.0 if higher_is_better else -1.0
    for ia, a in enumerate(names):
        for b in names[ia + 1 :]:
            n = min(len(curves[a]), len(curves[b]))
            diff = sign * (np.asarray(curves[a][:n]) - np.asarray(curves[b][:n]))
            last = 0.0
            for k, d in enumerate(diff, start=1):
                s = float(np.sign(d))
                if s == 0:
                    continue
                if last and s != last:
                    before, after = (b, a) if s > 0 else (a, b)
                    out.append(Crossing(k, before, after))
                last = s
    return sorted(out, key=lambda c: (c.k, c.before, c.after))
