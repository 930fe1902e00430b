"""The variance decomposition against simulations whose variance components are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hpo.report.variance import crossed_components, one_way_components, replicated_crossed_components


def _crossed(
    rng: np.random.Generator, n_init: int, n_data: int, sd: tuple[float, float, float]
) -> pd.DataFrame:
    a = rng.normal(0, sd[0], n_init)[:, None]
    b = rng.normal(0, sd[1], n_data)[None, :]
    y = 0.9 + a + b + rng.normal(0, sd[2], (n_init, n_data))
    ii, dd = np.meshgrid(np.arange(n_init), np.arange(n_data) + 7919, indexing="ij")
    return pd.DataFrame({"init_seed": ii.ravel(), "data_seed": dd.ravel(), "value": y.ravel()})


def test_crossed_components_recover_the_planted_variances_on_average() -> None:
    """Method-of-moments estimators are unbiased: over 200 simulated 8 x 8 designs each component's mean estimate
    lies within 10% of the planted variance (the standard error of that mean is about 4%)."""
    rng = np.random.default_rng(0)
    sd = (0.004, 0.002, 0.001)
    est = np.array(
        [
            [c.factors["init_seed"], c.factors["data_seed"], c.residual]
            for c in (crossed_components(_crossed(rng, 8, 8, sd)) for _ in range(200))
            if c is not None
        ]
    )
    assert len(est) == 200
    truth = np.square(sd)
    np.testing.assert_allclose(est.mean(axis=0), truth, rtol=0.10)


def test_one_large_design_is_within_tolerance_and_a_missing_cell_refuses() -> None:
    rng = np.random.default_rng(1)
    c = crossed_components(_crossed(rng, 60, 60, (0.01, 0.005, 0.002)))
    assert c is not None and c.levels == {"init_seed": 60, "data_seed": 60}
    assert c.factors["init_seed"] == pytest.approx(1e-4, rel=0.4)
    assert c.factors["data_seed"] == pytest.approx(2.5e-5, rel=0.4)
    assert c.residual == pytest.approx(4e-6, rel=0.1)
    frame = _crossed(rng, 4, 4, (0.01, 0.005, 0.002))
    assert crossed_components(frame.iloc[1:]) is None  # not every init seed met every data seed
    assert crossed_components(pd.concat([frame, frame.iloc[:1]])) is None  # a cell run twice


def test_a_source_without_variance_is_truncated_at_zero_and_named() -> None:
    rng = np.random.default_rng(2)
    c = crossed_components(_crossed(rng, 5, 5, (0.0, 0.01, 0.01)))
    assert c is not None and c.factors["init_seed"] >= 0
    if c.factors["init_seed"] == 0:
        assert "init_seed" in c.truncated


def test_three_crossed_factors_recover_their_variances_on_average() -> None:
    """Held-out split x init x data order, 6 x 4 x 4, over 400 simulations: every mean estimate within 12% (the
    split's, from 5 degrees of freedom per simulation, has a standard error of about 3% of its mean)."""
    rng = np.random.default_rng(4)
    sd = {"split": 0.003, "init_seed": 0.002, "data_seed": 0.001}
    grid = pd.MultiIndex.from_product([range(6), range(4), range(4)], names=list(sd)).to_frame(index=False)
    est = []
    for _ in range(400):
        y = 0.9 + rng.normal(0, 0.0005, len(grid))
        for f, s in sd.items():
            y += rng.normal(0, s, grid[f].nunique())[grid[f].to_numpy()]
        c = crossed_components(grid.assign(value=y), tuple(sd))
        assert c is not None
        est.append([c.factors[f] for f in sd] + [c.residual])
    truth = [v**2 for v in sd.values()] + [0.0005**2]
    np.testing.assert_allclose(np.mean(est, axis=0), truth, rtol=0.12)


def test_one_way_recovers_between_replicate_variance() -> None:
    rng = np.random.default_rng(3)
    est = []
    for _ in range(300):
        means = rng.normal(0, 0.003, 4)
        groups = [m + rng.normal(0, 0.002, 10) for m in means]
        c = one_way_components(groups)
        assert c is not None
        est.append((c.between, c.within))
    between, within = np.mean(est, axis=0)
    # truncation at 0 biases the between estimate up a little; the within estimate is unbiased
    assert between == pytest.approx(0.003**2, rel=0.15)
    assert within == pytest.approx(0.002**2, rel=0.05)
    assert one_way_components([np.array([1.0, 2.0])]) is None


def _replicated(
    rng: np.random.Generator, reps: int, n: int, sd: tuple[float, float, float, float]
) -> list[pd.DataFrame]:
    """``reps`` tuning replicates, each retrained on the same n x n grid of seeds, each with its own effects."""
    out = []
    for _ in range(reps):
        t = rng.normal(0, sd[0])
        f = _crossed(rng, n, n, sd[1:])
        out.append(f.assign(value=f.value + t))
    return out


def test_replicated_crossed_tuning_variance_is_unbiased_where_one_way_is_not() -> None:
    """The crossed design of issue 32: 3 replicates x 4 init x 4 data-order seeds, planted variances tuning 1,
    init 1, data order 1, residual 0.25. Over 800 simulations the new estimator's mean (before truncation) is
    within four standard errors of 1; the one-way estimator over the same data is off by the derived bias
    0.2 x (1 + 1) = 0.4. With no tuning variance planted the estimator's mean is 0."""
    rng = np.random.default_rng(11)
    for planted in (1.0, 0.0):
        raw, one_way, covered = [], [], 0
        for _ in range(800):
            groups = _replicated(rng, 3, 4, (math.sqrt(planted), 1.0, 1.0, 0.5))
            c = replicated_crossed_components(groups, n_boot=200)
            assert c is not None
            raw.append(c.raw_tuning)
            lo, hi = c.intervals["tuning"]
            covered += lo <= planted <= hi
            w = one_way_components([g.value.to_numpy() for g in groups])
            assert w is not None
            one_way.append(w.between)
        raw_a = np.asarray(raw)
        se = raw_a.std(ddof=1) / math.sqrt(len(raw_a))
        assert abs(raw_a.mean() - planted) < 4 * se, (raw_a.mean(), se)
        if planted:
            # the one-way estimate (truncated at 0 where negative: rare with a planted 1) is biased by about 0.4
            assert np.mean(one_way) - planted == pytest.approx(0.4, abs=0.15)
            assert covered / 800 > 0.9  # the parametric bootstrap's interval covers the planted variance
    assert replicated_crossed_components(groups[:1]) is None  # one replicate: no tuning variance
    assert replicated_crossed_components([groups[0], groups[1].iloc[1:]]) is None  # an incomplete grid
