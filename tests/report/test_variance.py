"""The variance decomposition against simulations whose variance components are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpo.report.variance import crossed_components, one_way_components


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
            [c.init, c.data, c.residual]
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
    assert c is not None and (c.n_init, c.n_data) == (60, 60)
    assert c.init == pytest.approx(1e-4, rel=0.4)
    assert c.data == pytest.approx(2.5e-5, rel=0.4)
    assert c.residual == pytest.approx(4e-6, rel=0.1)
    frame = _crossed(rng, 4, 4, (0.01, 0.005, 0.002))
    assert crossed_components(frame.iloc[1:]) is None  # not every init seed met every data seed
    assert crossed_components(pd.concat([frame, frame.iloc[:1]])) is None  # a cell run twice


def test_a_source_without_variance_is_truncated_at_zero_and_named() -> None:
    rng = np.random.default_rng(2)
    c = crossed_components(_crossed(rng, 5, 5, (0.0, 0.01, 0.01)))
    assert c is not None and c.init >= 0
    if c.init == 0:
        assert "init" in c.truncated


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
