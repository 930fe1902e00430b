"""How well one feature column alone predicts each binary task: leakage a user should see before tuning.

A column whose categories spell out a label (census's ``detailed household and family stat`` says "never marr")
makes a task trivially easy for every architecture and hides any difference between them. For each binary task
this scores every feature column on the training split by the AUC of its best single-column predictor: the
training positive rate of its category (categorical) or the value itself, either direction (continuous).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from hpo.data._tabular import TabularDataset

__all__ = ["single_feature_auc"]


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    if y.min() == y.max() or score.min() == score.max():
        return 0.5
    a = float(roc_auc_score(y, score))
    return max(a, 1.0 - a)


def _category_rate(codes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's category's positive rate (a categorical column's best single-column score)."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=len(uniq))
    count = np.bincount(inverse, minlength=len(uniq))
    return (pos / count)[inverse]


def _single_valued_sparse(ds: TabularDataset) -> list[tuple[int, str]]:
    """(code column, name) of every sparse field with one value per row (a list per cell has no single column)."""
    out, column = [], ds.spec.n_categorical
    for f in ds.spec.sparse:
        if f.slots == 1:
            out.append((column, f.name))
        column += f.slots
    return out


def single_feature_auc(ds: TabularDataset, split: str = "train") -> dict[str, list[dict[str, Any]]]:
    """Per binary task, every feature column with its single-column AUC, best first."""
    part = ds.splits[split]
    if part.replicated:
        part = part.select_replicas([0])
    n = len(part)
    cont = part.cont.reshape(n, part.cont.shape[-1]).cpu().numpy()
    cat = part.cat.reshape(n, part.cat.shape[-1]).cpu().numpy()
    y_all = part.y.reshape(n, part.y.shape[-1]).double().cpu().numpy()
    out: dict[str, list[dict[str, Any]]] = {}
    for k, task in enumerate(ds.tasks):
        if task.kind != "binary":
            continue
        defined = ~np.isnan(y_all[:, k])  # a task defined on a subset is judged where it is defined
        y = y_all[defined, k]
        scores = []
        for j, col in enumerate(ds.continuous):
            scores.append({"column": col, "auc": _auc(y, cont[defined, j])})
        for j, col in enumerate(ds.categorical):
            scores.append({"column": col, "auc": _auc(y, _category_rate(cat[defined, j], y))})
        for j, col in _single_valued_sparse(ds):  # an ID can leak a label as well as a category can
            scores.append({"column": col, "auc": _auc(y, _category_rate(cat[defined, j], y))})
        out[task.name] = sorted(scores, key=lambda s: -s["auc"])
    return out
