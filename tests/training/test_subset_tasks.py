"""A task defined on a subset of rows (a conversion only after a click): no loss, no gradient and no metric from
the rows where it is undefined; ESMM trains on such data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from hpo.data._tabular import Split
from hpo.training import TrainConfig
from hpo.training.metrics import task_metric
from hpo.training.trainer import _task_losses
from tests.training.test_trainer import binary_data, run


def test_undefined_rows_add_no_loss_and_no_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    out = torch.randn(2, 10, 2, dtype=torch.float64, generator=g, requires_grad=True)
    y = (torch.rand(2, 10, 2, generator=g) > 0.5).double()
    y[:, 3:7, 1] = float("nan")  # task 1 undefined on rows 3..6 of both replicas
    losses = _task_losses(out, y, ["binary", "binary"])
    keep = torch.tensor([i not in range(3, 7) for i in range(10)])
    subset = torch.nn.functional.binary_cross_entropy_with_logits(
        out[:, keep, 1], y[:, keep, 1], reduction="none"
    )
    torch.testing.assert_close(losses[:, 1], subset.mean(dim=1))
    (grad,) = torch.autograd.grad(losses.sum(), out)
    assert (grad[:, 3:7, 1] == 0).all() and (grad[:, keep, 1] != 0).all() and torch.isfinite(grad).all()


def test_metrics_use_only_the_defined_rows() -> None:
    y = np.array([1.0, 0.0, np.nan, 1.0, 0.0, np.nan])
    out = np.array([2.0, -1.0, 50.0, 0.5, 1.0, -50.0])
    defined = ~np.isnan(y)
    want = roc_auc_score(y[defined], 1 / (1 + np.exp(-out[defined])))
    assert task_metric("binary", "auc", y, out) == want
    assert math.isnan(task_metric("binary", "auc", np.full(3, np.nan), np.zeros(3)))


def test_esmm_trains_on_a_conversion_defined_on_every_impression_and_cvr_on_clicks() -> None:
    """Click and click-and-convert (ESMM's entire-space labels), then the same data with conversion undefined
    where there was no click (the subset task): both train to finite losses and metrics."""
    ds = binary_data()
    ctcvr = {
        k: Split(v.cont, v.cat, torch.stack([v.y[:, 0], v.y[:, 0] * v.y[:, 1]], 1))
        for k, v in ds.splits.items()
    }
    cfg = TrainConfig(lr=3e-3, batch_size=64, epochs=3, patience=None, device="cpu")
    _, (res,) = run("esmm", dataclasses.replace(ds, splits=ctcvr), [0], cfg, embed_dim=8, tower_units=(16,))
    assert res.metric("test", "b", "auc") > 0.6 and res.metric("test", "a", "auc") > 0.6
    on_clicks = {
        k: Split(
            v.cont, v.cat, torch.stack([v.y[:, 0], torch.where(v.y[:, 0] == 1, v.y[:, 1], torch.nan)], 1)
        )
        for k, v in ds.splits.items()
    }
    _, (sub,) = run("shared_bottom", dataclasses.replace(ds, splits=on_clicks), [0], cfg)
    assert math.isfinite(sub.metric("test", "b", "auc")) and math.isfinite(sub.metric("test", "b", "logloss"))
