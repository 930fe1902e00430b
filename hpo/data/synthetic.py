"""The MMoE paper's synthetic data with controllable task relatedness (Ma et al., KDD 2018, section 3).

Two orthogonal unit vectors ``u1, u2`` in R^d; ``w1 = c u1``, ``w2 = c (p u1 + sqrt(1 - p^2) u2)`` so that
``cos(w1, w2) = p``; ``x ~ N(0, I_d)``; ``y_i = w_i^T x + sum_j sin(alpha_j w_i^T x + beta_j) + eps_i`` with
``alpha_j, beta_j ~ N(0, 1)`` shared by both tasks and ``eps_i ~ N(0, noise^2)``. Both tasks are regressions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from hpo.data._tabular import Split, TabularDataset
from hpo.schema import InputSpec, TaskSpec

__all__ = ["SyntheticConfig", "SyntheticStream", "make_synthetic"]


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
    # draw n_train fresh training rows every epoch from the same task weights and sines (validation and test rows
    # stay fixed): no row is seen twice, so a model is limited by its capacity, not by 10k rows it can memorise
    stream: bool = False


@dataclass(frozen=True)
class _Task:
    """One dataset's generator: both tasks' weights and the sines they share."""

    w1: np.ndarray
    w2: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    noise: float

    @staticmethod
    def draw(cfg: SyntheticConfig, rng: np.random.Generator) -> _Task:
        q, _ = np.linalg.qr(rng.standard_normal((cfg.d, 2)))
        u1, u2 = q[:, 0], q[:, 1]
        w2 = cfg.c * (cfg.p * u1 + math.sqrt(max(0.0, 1.0 - cfg.p**2)) * u2)
        alpha, beta = cfg.sine_scale * rng.standard_normal(cfg.m), cfg.sine_scale * rng.standard_normal(cfg.m)
        return _Task(cfg.c * u1, w2, alpha, beta, cfg.noise)

    def rows(self, n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows ``x ~ N(0, I_d)`` and their two labels."""
        x = rng.standard_normal((n, d))

        def target(w: np.ndarray) -> np.ndarray:
            z = x @ w
            return (
                z + np.sin(np.outer(z, self.alpha) + self.beta).sum(axis=1) + rng.normal(0.0, self.noise, n)
            )

        return x, np.stack([target(self.w1), target(self.w2)], axis=1)


@dataclass(frozen=True)
class SyntheticStream:
    """Fresh training rows of one synthetic dataset for every epoch, drawn with PyTorch on the device that trains
    (so a GPU run is not held up by the CPU): epoch ``e`` uses a generator seeded by ``(dataset seed, e)``, so a
    retried run sees the same rows on the same kind of device (CPU and CUDA generators draw different numbers)."""

    cfg: SyntheticConfig
    task: _Task

    def draw(self, epoch: int, device: torch.device, out: Split | None = None) -> Split:
        seed = int(np.random.SeedSequence([self.cfg.seed, epoch]).generate_state(1)[0])
        gen = torch.Generator(device=device).manual_seed(seed)
        kw: dict[str, Any] = {"device": device, "dtype": torch.float32}
        n = self.cfg.n_train
        if out is None:
            out = Split(
                torch.empty(n, self.cfg.d, **kw),
                torch.empty(n, 0, dtype=torch.int64, device=device),
                torch.empty(n, 2, **kw),
            )
        x = torch.randn(n, self.cfg.d, generator=gen, out=out.cont)  # the same numbers as a fresh tensor's
        w = torch.as_tensor(np.stack([self.task.w1, self.task.w2], axis=1), **kw)  # (d, 2)
        alpha, beta = (torch.as_tensor(v, **kw) for v in (self.task.alpha, self.task.beta))
        z = x @ w  # (n, 2)
        sines = torch.sin(z.unsqueeze(-1) * alpha + beta).sum(dim=-1)
        out.y.copy_(z + sines + self.task.noise * torch.randn(n, 2, generator=gen, **kw))
        return out

    def select(self, keep: Sequence[int]) -> SyntheticStream:
        return self


def make_synthetic(cfg: SyntheticConfig | None = None) -> TabularDataset:
    """Generate the dataset; its provenance records the achieved Pearson correlation of the two labels."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    task = _Task.draw(cfg, rng)
    n = cfg.n_train + cfg.n_valid + cfg.n_test
    x, y = task.rows(n, cfg.d, rng)
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
        "weight_cosine": float(task.w1 @ task.w2 / (np.linalg.norm(task.w1) * np.linalg.norm(task.w2))),
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
        SyntheticStream(cfg, task) if cfg.stream else None,
    )
