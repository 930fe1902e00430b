"""The MMoE paper's synthetic data with controllable task relatedness (Ma et al., KDD 2018, section 3).

Two orthogonal unit vectors ``u1, u2`` in R^d; ``w1 = c u1``, ``w2 = c (p u1 + sqrt(1 - p^2) u2)`` so that
``cos(w1, w2) = p``; ``x ~ N(0, I_d)``; ``y_i = w_i^T x + sum_j sin(alpha_j w_i^T x + beta_j) + eps_i`` with
``alpha_j, beta_j ~ N(0, 1)`` shared by both tasks and ``eps_i ~ N(0, noise^2)``. Both tasks are regressions.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from hpo.data._tabular import Split, TabularDataset
from hpo.schema import InputSpec, TaskSpec

__all__ = ["SyntheticConfig", "make_synthetic"]


class SyntheticConfig(BaseModel):
    """Generator settings: the one definition, used by studies (``dataset: {kind: synthetic, ...}``) too. The
    paper's ``d = 100``; ``c``, ``m`` and the ``p`` grid are not published (reimplementations use ``c = 1``,
    ``m = 10``). ``noise`` is the noise's standard deviation; ``sine_scale`` the standard deviation of the sines'
    frequencies and phases (``alpha_i, beta_i ~ N(0, sine_scale^2)``; the paper's is 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["synthetic"] = "synthetic"
    p: float = Field(0.5, ge=-1, le=1)
    d: int = Field(100, ge=2)
    c: float = Field(1.0, gt=0)
    m: int = Field(10, ge=0)
    sine_scale: float = Field(1.0, gt=0)
    noise: float = Field(0.1, ge=0)
    n_train: int = Field(10_000, ge=1)
    n_valid: int = Field(1_000, ge=1)
    n_test: int = Field(1_000, ge=1)
    seed: int = Field(0, ge=0)


def make_synthetic(cfg: SyntheticConfig | None = None) -> TabularDataset:
    """Generate the dataset; its provenance records the achieved Pearson correlation of the two labels."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    q, _ = np.linalg.qr(rng.standard_normal((cfg.d, 2)))
    u1, u2 = q[:, 0], q[:, 1]
    w1 = cfg.c * u1
    w2 = cfg.c * (cfg.p * u1 + math.sqrt(max(0.0, 1.0 - cfg.p**2)) * u2)
    alpha, beta = cfg.sine_scale * rng.standard_normal(cfg.m), cfg.sine_scale * rng.standard_normal(cfg.m)
    n = cfg.n_train + cfg.n_valid + cfg.n_test
    x = rng.standard_normal((n, cfg.d))

    def target(w: np.ndarray) -> np.ndarray:
        z = x @ w
        return z + np.sin(np.outer(z, alpha) + beta).sum(axis=1) + rng.normal(0.0, cfg.noise, n)

    y = np.stack([target(w1), target(w2)], axis=1)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    empty = torch.empty(n, 0, dtype=torch.int64)
    bounds = np.cumsum([0, cfg.n_train, cfg.n_valid, cfg.n_test])
    splits = {
        s: Split(xt[a:b], empty[a:b], yt[a:b])
        for s, a, b in zip(("train", "valid", "test"), bounds[:-1], bounds[1:])
    }
    provenance = {
        "dataset": "synthetic",
        "generator": "Ma et al. (KDD 2018) section 3",
        "config": cfg.model_dump(exclude={"kind"}),
        "weight_cosine": float(w1 @ w2 / (np.linalg.norm(w1) * np.linalg.norm(w2))),
        "label_pearson": float(np.corrcoef(y[:, 0], y[:, 1])[0, 1]),
    }
    return TabularDataset(
        f"synthetic-p{cfg.p:g}-seed{cfg.seed}",
        InputSpec(cfg.d),
        (TaskSpec("y1", "regression"), TaskSpec("y2", "regression")),
        splits,
        tuple(f"x{i}" for i in range(cfg.d)),
        (),
        provenance,
    )
