"""GradNorm (Chen et al., ICML 2018): learn task weights ``w_k`` so that the gradient norms of the weighted task
losses at the last shared layer ``W`` move towards ``mean_j G_j * r_k^alpha``, where ``r_k`` is task ``k``'s
relative inverse training rate ``(L_k(t) / L_k(0)) / mean_j (L_j(t) / L_j(0))``. The target is a constant; the
weights are renormalised to sum to ``K`` after each step. Everything is per replica.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hpo.errors import ConfigError
from hpo.models import MTLModel
from hpo.weighting._base import LossWeighting, register_weighting


@register_weighting("gradnorm")
class GradNorm(LossWeighting):
    replica_buffers = ("initial",)
    reuses_graph = True  # a backward per task's gradient norm, then the step's
    initial: Tensor
    started: Tensor

    def __init__(self, n_tasks: int, replicas: int, *, alpha: float = 1.5, **kw: Any) -> None:
        super().__init__(n_tasks, replicas)
        self.alpha = alpha
        self.w = nn.Parameter(torch.ones(replicas, n_tasks))
        self.register_buffer("initial", torch.zeros(replicas, n_tasks))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def combine(self, losses: Tensor, model: MTLModel) -> Tensor:
        shared = model.shared_parameters()
        if not shared:
            raise ConfigError(
                f"loss_weighting 'gradnorm' needs parameters shared by the tasks; {model.name} has none"
            )
        if not bool(self.started):
            self.initial.copy_(losses.detach())
            self.started.fill_(True)
        norms = []
        for k in range(self.n_tasks):
            grads = torch.autograd.grad(losses[:, k].sum(), shared, retain_graph=True, allow_unused=True)
            sq = sum(g.pow(2).flatten(1).sum(1) for g in grads if g is not None)
            norms.append(torch.as_tensor(sq).sqrt())
        gnorm = torch.stack(norms, dim=1).detach()  # (R, K): ||grad_W L_k||
        w = self.w.detach()
        g = w * gnorm
        ratio = losses.detach() / self.initial.clamp_min(1e-12)
        r = ratio / ratio.mean(dim=1, keepdim=True)
        target = g.mean(dim=1, keepdim=True) * r.pow(self.alpha)
        # d/dw_k sum_j |w_j ||grad L_j|| - target_j| with the target held constant
        self.w.grad = (torch.sign(g - target) * gnorm).to(self.w.dtype)
        return (w.to(losses.dtype) * losses).sum(dim=-1)

    def after_step(self) -> None:
        with torch.no_grad():
            self.w.clamp_(min=1e-4)
            self.w.mul_(self.n_tasks / self.w.sum(dim=1, keepdim=True))

    def task_weights(self) -> Tensor:
        return self.w.detach()
