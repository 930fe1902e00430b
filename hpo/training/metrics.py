"""Per-task metrics, computed by scikit-learn itself so that numbers match what reviewers recompute."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, mean_squared_error, r2_score, roc_auc_score

from hpo.schema import HIGHER_IS_BETTER

__all__ = ["HIGHER_IS_BETTER", "task_metrics"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # numerically stable logistic


def task_metrics(kind: str, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """``auc`` and ``logloss`` for a binary task (``output`` are logits); ``mse`` and ``r2`` for regression.

    A metric that is undefined on the data (AUC with one class present) or on the output (non-finite) is NaN.
    """
    y = np.asarray(y, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if not np.isfinite(out).all():
        keys = ("auc", "logloss") if kind == "binary" else ("mse", "r2")
        return dict.fromkeys(keys, float("nan"))
    if kind == "binary":
        p = _sigmoid(out)
        auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
        return {"auc": auc, "logloss": float(log_loss(y, p, labels=[0.0, 1.0]))}
    return {"mse": float(mean_squared_error(y, out)), "r2": float(r2_score(y, out))}
