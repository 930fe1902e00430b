"""The estimators tuning and reporting share: expected best of k, the doubling gain, the resolvable gap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from hpo.estimators import (
    COLLAPSE_SCALES,
    doubling_gain,
    doubling_gain_interval,
    expected_best,
    qn_scale,
    resolvable_gap,
    seed_spread,
)


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


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9, 10, 11, 16, 17, 30])
def test_qn_is_unbiased_for_the_sd_of_normal_seeds(n: int) -> None:
    """The finite-sample corrections: the mean of Qn over many normal samples of size n is the sd (within 1.5%;
    the simulation's own error is under 0.3%)."""
    rng = np.random.default_rng(n)
    x = rng.normal(0.9, 0.002, size=(40_000 if n < 12 else 8_000, n))
    mean = np.mean([qn_scale(row) for row in x])
    assert mean == pytest.approx(0.002, rel=0.015)
    # robust: with fewer than half the values wrecked it stays within the range of the healthy ones' distances
    row = x[0].copy()
    wrecked = row.copy()
    wrecked[: (n - 1) // 2] = -1e6
    healthy = np.abs(np.subtract.outer(row, row))
    assert qn_scale(wrecked) <= 2.3 * healthy.max()


def test_a_collapsed_seed_does_not_set_the_spread() -> None:
    """The census probe that motivated it: three healthy seeds and one that learned nothing. The sample sd of all
    four is ~0.2 (it would make every tolerance meaningless); the spread is the healthy seeds' sd, the collapsed
    seed is named."""
    values = [0.9471, 0.9468, 0.5512, 0.9475]
    spread = seed_spread(values)
    assert np.std(values, ddof=1) > 0.19
    assert spread.collapsed == [2] and spread.failed == []
    assert spread.sd == pytest.approx(np.std([0.9471, 0.9468, 0.9475], ddof=1))
    assert spread.used == 3 and "1 collapsed, left out (0.5512)" in spread.describe()
    # lower is better (a loss): the collapsed seed is the high one; a low one is a good seed, kept
    losses = [0.31, 0.312, 0.95, 0.309]
    assert seed_spread(losses, higher_is_better=False).collapsed == [2]
    assert seed_spread([0.31, 0.312, 0.02, 0.309], higher_is_better=False).collapsed == []
    # a failed seed (no value) is counted apart; under two usable seeds there is no spread
    nan = seed_spread([0.9, float("nan"), 0.91, 0.905])
    assert (
        nan.failed == [1]
        and nan.collapsed == []
        and nan.sd == pytest.approx(np.std([0.9, 0.91, 0.905], ddof=1))
    )
    assert math.isnan(seed_spread([0.9, float("nan")]).sd)


def test_two_bad_seeds_of_four_need_the_chance_level() -> None:
    """Qn breaks down at half its values: with two bad seeds of four (the census probe) it flags neither, and the
    spread is the sd of all four. The chance level (AUC 0.5) takes the seed that learned nothing out first; among
    the three left Qn finds the other."""
    probe = [0.9469400039428135, 0.9470583234744628, 0.8805147976448464, 0.5]
    blind = seed_spread(probe)
    assert blind.collapsed == [] and blind.sd == pytest.approx(0.2147, abs=1e-4)
    seen = seed_spread(probe, chance=0.5)
    assert seen.collapsed == [2, 3] and seen.used == 2
    assert seen.sd == pytest.approx(np.std(probe[:2], ddof=1))
    # within 1% of the way from chance to the median is chance; a weak but learning seed is judged by Qn alone
    assert seed_spread([0.80, 0.81, 0.79, 0.503], chance=0.5).collapsed == [3]
    assert seed_spread([0.80, 0.81, 0.79, 0.60], chance=0.5).collapsed == [
        3
    ]  # by Qn: 8.6 scales out (over 8)
    assert seed_spread([0.80, 0.81, 0.79, 0.62], chance=0.5).collapsed == []  # 7.7: kept
    assert seed_spread([0.80, 0.81, 0.79, 0.795], chance=0.5).collapsed == []
    # R2's chance is about 0; a loss's is about the labels' variance, on the other side (lower is better)
    assert seed_spread([0.61, 0.60, 0.62, -0.01], chance=0.0).collapsed == [3]
    loss = seed_spread([0.050, 0.051, 0.90, 1.02], higher_is_better=False, chance=1.0)
    assert loss.collapsed == [2, 3] and loss.used == 2  # 1.02 at chance, 0.90 by Qn among the rest


@pytest.mark.parametrize("n", [4, 8])
def test_healthy_normal_seeds_are_rarely_called_collapsed(n: int) -> None:
    """Qn from four values is noisy, so the threshold is far out: over many samples of normal seeds, few have a
    seed left out, and the spread stays close to unbiased."""
    rng = np.random.default_rng(7)
    spreads = [seed_spread(row) for row in rng.normal(0.0, 1.0, size=(4_000, n))]
    flagged = np.mean([bool(s.collapsed) for s in spreads])
    assert flagged < (0.02 if n == 4 else 0.005), flagged
    assert COLLAPSE_SCALES >= 8
    sd = np.mean([s.sd for s in spreads])
    plain = np.mean([np.std(row, ddof=1) for row in rng.normal(0.0, 1.0, size=(4_000, n))])
    assert sd == pytest.approx(plain, rel=0.03)  # what leaving out the rare flagged seed costs
