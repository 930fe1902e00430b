"""The expected-best-of-k estimator against brute force, and crossings of two curves."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hpo.report.expected_max import best_so_far, crossings, expected_max, subset_weights


def test_weights_are_distributions_over_the_order_statistics() -> None:
    w = subset_weights(9)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert w[0] == pytest.approx(np.full(9, 1 / 9))  # one trial: each equally likely
    assert w[-1][-1] == pytest.approx(1.0)  # all trials: the largest


def test_estimator_equals_the_exact_mean_over_every_subset() -> None:
    x = np.array([0.71, 0.74, 0.69, 0.80, 0.77, 0.73, 0.75])
    curve = expected_max(x, n_resamples=10).mean
    for k in range(1, len(x) + 1):
        exact = np.mean([max(s) for s in itertools.combinations(x, k)])
        assert curve[k - 1] == pytest.approx(exact)
    low = expected_max(x, higher_is_better=False, n_resamples=10).mean
    assert low[2] == pytest.approx(np.mean([min(s) for s in itertools.combinations(x, 3)]))


def test_band_contains_the_curve_and_nan_trials_are_left_out() -> None:
    x = np.r_[np.random.default_rng(0).normal(0.8, 0.02, 30), np.nan]
    em = expected_max(x)
    assert em.n_trials == 30
    assert np.all(em.low <= em.mean + 1e-12) and np.all(em.mean <= em.high + 1e-12)
    assert np.all(np.diff(em.mean) >= -1e-12)  # more trials never lower the expected best


def test_crossing_is_where_the_orders_change() -> None:
    curves = {"a": np.array([0.8, 0.81, 0.82, 0.83]), "b": np.array([0.7, 0.8, 0.85, 0.9])}
    (c,) = crossings(curves)
    assert (c.k, c.before, c.after) == (3, "a", "b")
    assert c.sentence() == "with fewer than 3 trials, a looks better; from 3 on, b"
    assert not crossings({"a": curves["a"], "b": curves["a"] - 0.1})
    (low,) = crossings({"a": -curves["a"], "b": -curves["b"]}, higher_is_better=False)
    assert (low.k, low.before, low.after) == (3, "a", "b")


def test_best_so_far_skips_failed_trials() -> None:
    out = best_so_far(np.array([np.nan, 0.5, 0.4, np.nan, 0.7]))
    assert math.isnan(out[0])
    np.testing.assert_allclose(out[1:], [0.5, 0.5, 0.5, 0.7])
    np.testing.assert_allclose(best_so_far(np.array([3.0, 1.0, 2.0]), higher_is_better=False), [3, 1, 1])
