"""The estimators tuning and reporting share: expected best of k, the doubling gain, the resolvable gap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from hpo.estimators import doubling_gain, doubling_gain_interval, expected_best, resolvable_gap


def test_expected_best_is_the_mean_over_every_subset() -> None:
    x = np.array([0.3, 0.9, 0.1, 0.5, 0.7, 0.2])
    for k in range(1, len(x) + 1):
        exact = np.mean([max(c) for c in itertools.combinations(x, k)])
        assert expected_best(x, k) == pytest.approx(exact)
        assert expected_best(x, k, higher_is_better=False) == pytest.approx(
            np.mean([min(c) for c in itertools.combinations(x, k)])
        )


def test_doubling_gain_is_positive_for_improvement_in_either_direction() -> None:
    x = np.array([0.1, 0.4, 0.2, 0.8])
    assert doubling_gain(x) == pytest.approx(0.8 - expected_best(x, 2))
    assert doubling_gain(-x, higher_is_better=False) == pytest.approx(doubling_gain(x))
    assert doubling_gain(np.full(6, 0.5)) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(doubling_gain(np.array([0.5])))


def test_doubling_gain_interval_is_the_bootstrap_of_the_gain_itself() -> None:
    """The vectorised interval equals the percentile interval of doubling_gain over the same resamples, in
    either direction, and needs four values."""
    x = np.random.default_rng(3).normal(0.8, 0.02, 12)
    for sign, higher in ((1.0, True), (-1.0, False)):
        draws = np.random.default_rng(0).choice(sign * x, (1000, len(x)))
        direct = [doubling_gain(d, higher_is_better=higher) for d in draws]
        lo, hi = doubling_gain_interval(sign * x, higher_is_better=higher)
        assert (lo, hi) == pytest.approx(tuple(np.quantile(direct, [0.025, 0.975])), abs=1e-11)
        assert lo <= doubling_gain(sign * x, higher_is_better=higher) <= hi
    assert all(math.isnan(v) for v in doubling_gain_interval(np.array([0.1, 0.2, 0.3])))


@pytest.mark.parametrize(("sd", "n", "pairs"), [(0.002, 30, 1), (0.002, 30, 10), (0.01, 8, 55)])
def test_resolvable_gap_has_the_power_at_the_holm_level(sd: float, n: int, pairs: int) -> None:
    """Checked against the power of the two-sided z-test computed directly at alpha / pairs."""
    delta = resolvable_gap(sd, n, comparisons=pairs)
    level = 0.05 / pairs
    se = sd * math.sqrt(2 / n)
    z = sps.norm.ppf(1 - level / 2)
    power = sps.norm.sf(z - delta / se) + sps.norm.cdf(-z - delta / se)
    assert power == pytest.approx(0.8, abs=1e-3)
    assert resolvable_gap(sd, n, comparisons=pairs) > resolvable_gap(sd, n) or pairs == 1
