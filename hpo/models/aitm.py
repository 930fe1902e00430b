"""AITM (Xi et al., KDD 2021, "Modeling the Sequential Dependence among Audience Multi-step Conversions with
Multi-task Learning in Targeted Display Advertising"), written only with the public extension API
(:mod:`hpo.models.api`), as a plugin would be.

The tasks are the steps of a funnel (impression -> click -> purchase ...), in the study's order. Each task has a
tower on a shared embedding of the input, ending in a representation ``q_t`` of ``d`` values. From the second
step on, an *adaptive information transfer* module moves what the previous step learnt into this one: the
previous step's representation passes one ReLU layer (``p = relu(W q_{t-1} + b)``), and attention over the two
vectors ``u in [q_t, p]`` (weight ``w_u = softmax_u(<Q u, K u> / sqrt(d))`` from linear maps Q, K of each, output
``sum_u w_u V u``) gives the new ``q_t``, which the next step receives in turn. Each step's output is a linear head on
its ``q_t``. A *behavioural expectation calibrator* adds ``alpha x mean(relu(p_t - p_{t-1}))`` over the batch and
the binary steps to the loss: a later step's probability should not exceed the earlier one's.

Units per layer: ``tasks x tower_units[j]`` at the towers' depths, then ``(tasks - 1) x d`` for the transfer layers
(their ReLU makes them hidden units); the shared embedding (an input representation) and the attention's linear
maps (as gates elsewhere) are not hidden units.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from hpo.models.api import (
    Block,
    Features,
    GateReading,
    InputLayer,
    InputSpec,
    MTLModel,
    ParallelLinear,
    ParallelMLP,
    Part,
    TaskSpec,
    check_positive,
    check_widths,
    factory_kwargs,
    mlp_blocks,
    register_model,
)

__all__ = ["AITM"]


def _one(layer: ParallelLinear, i: int, x: Tensor) -> Tensor:
    """Block ``i`` of a parallel linear layer on ``(R, B, in)`` -> ``(R, B, out)``."""
    return torch.baddbmm(layer.bias[:, i].unsqueeze(1), x, layer.weight[:, i])


@register_model(
    "aitm",
    "AITM: a tower per funnel step on a shared embedding; attention moves each step's representation into the "
    "next; a calibrator keeps a later step's probability below the earlier one's",
    {
        "embed_dim": "width of the shared embedding of the input (not hidden units: an input representation)",
        "tower_units": "hidden units of each task tower, one entry per layer (the last is the representation d)",
        "alpha": "weight of the behavioural expectation calibrator (0: none)",
    },
)
class AITM(MTLModel):
    """AITM for a K-step funnel. Units per layer: tasks x tower_units[j], then (tasks - 1) x d."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        embed_dim: int = 64,
        tower_units: Sequence[int] = (64, 32),
        alpha: float = 0.6,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.embed_dim = check_positive("embed_dim", embed_dim)
        self.tower_units = check_widths("tower_units", tower_units)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        k, d = self.n_tasks, self.tower_units[-1]
        self.input = InputLayer(spec, {"embedding": Part(1, self.embed_dim, hidden=False)}, replicas, **kw)
        self.towers = ParallelMLP(replicas, k, self.embed_dim, self.tower_units, **kw)
        links = max(1, k - 1)  # the transfers between consecutive steps (one unused placeholder when K = 1)
        self.transfer = ParallelLinear(replicas, links, d, d, **kw)
        self.query = ParallelLinear(replicas, links, d, d, **kw)
        self.key = ParallelLinear(replicas, links, d, d, **kw)
        self.value = ParallelLinear(replicas, links, d, d, **kw)
        self.heads = ParallelLinear(replicas, k, d, 1, **kw)
        self._penalty: Tensor | None = None

    def _attend(self, i: int, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """The paper's attention over the two vectors ``u in [q, p]`` (each ``(R, B, d)``) with link ``i``'s maps:
        ``w_u = softmax_u(<Q u, K u> / sqrt(d))``, new representation ``sum_u w_u V u``; and the weights."""
        items = (q, p)
        logits = torch.stack(
            [(_one(self.query, i, u) * _one(self.key, i, u)).sum(-1) for u in items], dim=-1
        ) / math.sqrt(q.shape[-1])
        w = torch.softmax(logits, dim=-1)  # (R, B, 2)
        out = w[..., 0:1] * _one(self.value, i, q) + w[..., 1:2] * _one(self.value, i, p)
        return out, w

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        shared = self.input(x)["embedding"].unsqueeze(1)  # (R, 1, B, e)
        reps = self.towers(shared)  # (R, K, B, d): every tower's last hidden layer (after its ReLU)
        q = [reps[:, 0]]
        for t in range(1, self.n_tasks):
            p = torch.relu(_one(self.transfer, t - 1, q[t - 1]))  # what the previous step passes on
            new, w = self._attend(t - 1, reps[:, t], p)
            q.append(new)
            if gates is not None:
                gates[f"transfer:{self.tasks[t].name}"] = GateReading(w, ("own", self.tasks[t - 1].name))
        out = torch.cat([_one(self.heads, t, q[t]) for t in range(self.n_tasks)], dim=-1)  # (R, B, K)
        self._penalty = self._calibration(out)
        return out

    def _calibration(self, out: Tensor) -> Tensor | None:
        """``alpha x sum over consecutive binary steps of mean(relu(p_t - p_{t-1}))`` per replica."""
        binary = [t for t in range(self.n_tasks) if self.tasks[t].kind == "binary"]
        if self.alpha == 0 or len(binary) < 2:
            return None
        p = torch.sigmoid(
            out[..., binary].float() if out.dtype in (torch.float16, torch.bfloat16) else out[..., binary]
        )
        return self.alpha * F.relu(p[..., 1:] - p[..., :-1]).mean(dim=1).sum(dim=-1)

    def regularization(self) -> Tensor | None:
        """The calibrator's penalty on the batch the last forward pass saw (the trainer adds it to that step's
        loss)."""
        return self._penalty

    def hidden_blocks(self) -> Iterator[Block]:
        yield from mlp_blocks(self.towers, "towers", 1)
        if self.n_tasks > 1:
            _, n, _, width = self.transfer.weight.shape
            yield Block(len(self.tower_units) + 1, "transfer", int(n), int(width))
