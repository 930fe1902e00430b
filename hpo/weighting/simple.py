"""Equal and fixed weights: the sum of per-task losses, optionally scaled per task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from hpo.models import MTLModel
from hpo.weighting._base import LossWeighting, register_weighting


@register_weighting("equal")
class Equal(LossWeighting):
    """``sum_k L_k`` (the MMoE paper's choice)."""

    def combine(self, losses: Tensor, model: MTLModel) -> Tensor:
        return losses.sum(dim=-1)


@register_weighting("fixed")
class Fixed(LossWeighting):
    """``sum_k w_k L_k`` with user-given ``w``."""

    w: Tensor

    def __init__(
        self, n_tasks: int, replicas: int, *, weights: Sequence[float] | None = None, **kw: Any
    ) -> None:
        super().__init__(n_tasks, replicas)
        self.register_buffer("w", torch.tensor(list(weights or [1.0] * n_tasks), dtype=torch.float32))

    def combine(self, losses: Tensor, model: MTLModel) -> Tensor:
        return (losses * self.w.to(losses.dtype)).sum(dim=-1)

    def task_weights(self) -> Tensor:
        return self.w.expand(self.replicas, -1)
