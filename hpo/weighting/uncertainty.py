"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018): learn a log-variance ``s_k`` per task and minimise
``sum_k L_k / (2 exp(s_k)) + s_k / 2``, so that noisier tasks get smaller weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hpo.models import MTLModel
from hpo.weighting._base import LossWeighting, register_weighting


@register_weighting("uncertainty")
class Uncertainty(LossWeighting):
    def __init__(self, n_tasks: int, replicas: int, **kw: Any) -> None:
        super().__init__(n_tasks, replicas)
        self.log_var = nn.Parameter(torch.zeros(replicas, n_tasks))

    def combine(self, losses: Tensor, model: MTLModel) -> Tensor:
        s = self.log_var.to(losses.dtype)
        return (losses / (2 * s.exp()) + s / 2).sum(dim=-1)

    def task_weights(self) -> Tensor:
        return (0.5 * torch.exp(-self.log_var)).detach()
