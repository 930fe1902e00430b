"""Each metric alone (what early stopping reads) is the same number as in the full set the results store."""

from __future__ import annotations

import numpy as np
import pytest

from hpo.training.metrics import METRICS, chance_metric, task_metric, task_metrics


@pytest.mark.parametrize("kind", sorted(METRICS))
def test_one_metric_is_the_value_the_full_set_reports(kind: str) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(np.float32) if kind == "binary" else rng.normal(size=500)
    out = rng.normal(size=500).astype(np.float32)
    full = task_metrics(kind, y, out)
    assert list(full) == list(METRICS[kind])
    for name, value in full.items():
        assert task_metric(kind, name, y, out) == value  # the same call on the same numbers: equal, not close


def test_undefined_metrics_are_nan_alone_as_in_the_set() -> None:
    y = np.zeros(10)
    assert np.isnan(task_metric("binary", "auc", y, np.arange(10.0)))  # one class present
    assert np.isnan(task_metric("regression", "mse", y, np.full(10, np.inf)))
    assert np.isnan(task_metrics("binary", y, np.arange(10.0))["auc"])


def test_a_metric_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="'mse' is not one of a binary task's"):
        task_metric("binary", "mse", np.zeros(3), np.zeros(3))


def test_the_chance_level_is_what_a_constant_output_scores() -> None:
    """A model that learned nothing outputs the training labels' mean (or base rate): AUC 0.5, log loss the base
    rate's entropy, MSE the evaluation labels' spread around that mean, R2 about 0."""
    rng = np.random.default_rng(0)
    y_tr, y_ev = ((rng.random(n) < 0.2).astype(float) for n in (5000, 2000))
    rate = y_tr.mean()
    assert chance_metric("binary", "auc", y_tr, y_ev) == 0.5
    entropy = -(y_ev * np.log(rate) + (1 - y_ev) * np.log(1 - rate)).mean()
    assert chance_metric("binary", "logloss", y_tr, y_ev) == pytest.approx(entropy, rel=1e-9)
    r_tr, r_ev = rng.normal(3.0, 2.0, 5000), rng.normal(3.0, 2.0, 2000)
    assert chance_metric("regression", "mse", r_tr, r_ev) == pytest.approx(((r_ev - r_tr.mean()) ** 2).mean())
    assert abs(chance_metric("regression", "r2", r_tr, r_ev)) < 0.01
