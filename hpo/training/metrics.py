"""Per-task metrics, computed by scikit-learn itself so that numbers match what reviewers recompute."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import log_loss, mean_squared_error, r2_score, roc_auc_score

from hpo.schema import HIGHER_IS_BETTER, METRICS_BY_KIND

__all__ = ["HIGHER_IS_BETTER", "METRICS", "chance_metric", "task_metric", "task_metrics"]

METRICS = METRICS_BY_KIND  # the metrics of each kind of task, in the order ``task_metrics`` reports them


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # numerically stable logistic


def task_metric(kind: str, name: str, y: np.ndarray, output: np.ndarray) -> float:
    """One metric of :func:`task_metrics`, by the same rules, without computing the others.

    Why separately: early stopping reads one number per replica and epoch, and :func:`task_metrics` computes every
    metric of the task, mostly scikit-learn's input checks, paid for every replica, task and epoch (measured in
    bench/PROFILE.md "Seventh pass").
    """
    if name not in METRICS.get(kind, ()):
        raise ValueError(f"metric {name!r} is not one of a {kind} task's: {METRICS.get(kind)}")
    y = np.asarray(y, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    defined = ~np.isnan(y)  # a NaN label: the task is undefined on that row (measured on the others)
    if not defined.all():
        y, out = y[defined], out[defined]
        if not len(y):
            return float("nan")
    if not np.isfinite(out).all():
        return float("nan")
    if name == "auc":
        return float(roc_auc_score(y, _sigmoid(out))) if 0 < y.sum() < len(y) else float("nan")
    if name == "logloss":
        return float(log_loss(y, _sigmoid(out), labels=[0.0, 1.0]))
    if name == "mse":
        return float(mean_squared_error(y, out))
    return float(r2_score(y, out))


def task_metrics(kind: str, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """``auc`` and ``logloss`` for a binary task (``output`` are logits); ``mse`` and ``r2`` for regression.

    A metric that is undefined on the data (AUC with one class present) or on the output (non-finite) is NaN.
    """
    return {name: task_metric(kind, name, y, output) for name in METRICS[kind]}


def chance_metric(kind: str, name: str, y_train: np.ndarray, y_eval: np.ndarray) -> float:
    """What a model that learned nothing scores on ``y_eval``: the constant output a collapsed run converges to,
    the training labels' mean (regression) or the logit of their positive rate (binary), measured by
    :func:`task_metric`'s rules: AUC 0.5, R2 about 0, MSE about the labels' variance, log loss about the base
    rate's entropy. The settled rule's seed probe calls a seed at this level collapsed
    (:func:`hpo.estimators.seed_spread`)."""
    y = np.asarray(y_train, dtype=np.float64)
    centre = float(np.nanmean(y)) if np.isfinite(y).any() else float("nan")
    if kind == "binary":
        rate = min(max(centre, 1e-6), 1.0 - 1e-6)
        centre = math.log(rate / (1.0 - rate))
    return task_metric(kind, name, y_eval, np.full(np.shape(y_eval), centre))
