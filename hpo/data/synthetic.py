"""The MMoE paper's synthetic data with controllable task relatedness (Ma et al., KDD 2018, section 3).

Two orthogonal unit vectors ``u1, u2`` in R^d; ``w1 = c u1``, ``w2 = c (p u1 + sqrt(1 - p^2) u2)`` so that
``cos(w1, w2) = p``; ``x ~ N(0, I_d)``; ``y_i = w_i^T x + sum_j sin(alpha_j w_i^T x + beta_j) + eps_i`` with
``alpha_j, beta_j ~ N(0, 1)`` shared by both tasks and ``eps_i ~ N(0, noise^2)``. Both tasks are regressions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from hpo.data._tabular import Split, TabularDataset
from hpo.errors import DataError
from hpo.models import InputSpec, TaskSpec

__all__ = ["SyntheticConfig", "make_synthetic"]


@dataclass(frozen=True)
class SyntheticConfig:
    """Generator settings. The paper's ``d = 100``; ``c``, ``m`` and the ``p`` grid are not published
    (reimplementations use ``c = 1``, ``m = 10``). ``noise`` is the noise's standard deviation."""

    p: float = 0.5
    d: int = 100
    c: float = 1.0
    m: int = 10
    noise: float = 0.1
    n_train: int = 10_000
    n_valid: int = 1_000
    n_test: int = 1_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not -1.0 <= self.p <= 1.0:
            raise DataError(f"synthetic: p must lie in [-1, 1], got {self.p}")
        if self.d < 2:
            raise DataError(f"synthetic: d must be >= 2 (two orthogonal directions), got {self.d}")
        if self.m < 0 or self.noise < 0 or self.c <= 0:
            raise DataError(
                f"synthetic: need m >= 0, noise >= 0 and c > 0, got m={self.m}, noise={self.noise}, "
                f"c={self.c}"
            )
        if self.seed < 0:
            raise DataError(f"synthetic: seed must be a non-negative integer, got {self.seed}")
        for name in ("n_train", "n_valid", "n_test"):
            if getattr(self, name) < 1:
                raise DataError(f"synthetic: {name} must be >= 1, got {getattr(self, name)}")


def make_synthetic(cfg: SyntheticConfig | None = None) -> TabularDataset:
    """Generate the dataset; its provenance records the achieved Pearson correlation of the two labels."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    q, _ = np.linalg.qr(rng.standard_normal((cfg.d, 2)))
    u1, u2 = q[:, 0], q[:, 1]
    w1 = cfg.c * u1
    w2 = cfg.c * (cfg.p * u1 + math.sqrt(max(0.0, 1.0 - cfg.p**2)) * u2)
    alpha, beta = rng.standard_normal(cfg.m), rng.standard_normal(cfg.m)
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
        "config": asdict(cfg),
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
