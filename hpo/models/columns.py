"""Models with one network column per task: Single-Task, L2-Constrained and Cross-Stitch.

The ``K`` columns are computed together: their first layers share the fused input layer and deeper layers are one
batched product over the columns. Units per layer: ``n_tasks x hidden_units[j]`` at depth ``j``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hpo.models._base import GateReading, MTLModel
from hpo.models._budget import Block
from hpo.models._common import check_widths, factory_kwargs, mlp_blocks, tower_outputs
from hpo.models._layers import Features, InputLayer, InputSpec, ParallelMLP, Part, TaskSpec, blocks_first
from hpo.models._registry import register_model

__all__ = ["CrossStitch", "L2Constrained", "SingleTask"]

_COLUMN_PARAMS = {"hidden_units": "hidden units of each task's column, one entry per layer"}


class _Columns(MTLModel):
    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        hidden_units: Sequence[int] = (64,),
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.hidden_units = check_widths("hidden_units", hidden_units)
        h = self.hidden_units
        self.input = InputLayer(spec, {"columns": Part(self.n_tasks, h[0])}, replicas, **kw)
        self.columns = ParallelMLP(replicas, self.n_tasks, h[0], h[1:], **kw)
        self.head = ParallelMLP(replicas, self.n_tasks, h[-1], (), output_features=1, **kw)

    def _first(self, x: Features) -> Tensor:
        return torch.relu(blocks_first(self.input(x)["columns"], self.n_tasks))

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        return tower_outputs(self.head, self.columns(self._first(x)))

    def hidden_blocks(self) -> Iterator[Block]:
        n, width = self.input.part_shape("columns")
        yield Block(1, "columns", n, width)
        yield from mlp_blocks(self.columns, "columns", 2)

    def column_weights(self) -> list[Tensor]:
        """Every layer's weights as ``(R, K, ...)``: slice ``[:, k]`` is task ``k``'s matrix for that layer."""
        r, k = self.replicas, self.n_tasks
        out = [self.input.dense_weight().view(r, -1, k, self.hidden_units[0]).transpose(1, 2)]
        out += [layer.weight for layer in self.columns.linears()]
        assert self.head.output is not None
        out.append(self.head.output.weight)
        return out


@register_model("single_task", "One independent network per task (the no-sharing baseline)", _COLUMN_PARAMS)
class SingleTask(_Columns):
    """K independent networks. Units per layer: tasks x hidden_units[j]."""


@register_model(
    "l2_constrained",
    "One network per task; the loss adds alpha x the squared L2 distance between the tasks' weights",
    {**_COLUMN_PARAMS, "alpha": "strength of the L2 tie between corresponding weights of different tasks"},
)
class L2Constrained(_Columns):
    """Soft parameter sharing (Duong et al., 2015): ``alpha * sum_layers sum_{i<j} ||W_i - W_j||^2`` is added to
    the loss. Units per layer: tasks x hidden_units[j]."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        hidden_units: Sequence[int] = (64,),
        alpha: float = 1e-3,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas, hidden_units=hidden_units, device=device, dtype=dtype)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)

    def regularization(self) -> Tensor | None:
        """``alpha * sum_{i<j} ||W_i - W_j||^2`` per replica, via ``K sum_i ||W_i||^2 - ||sum_i W_i||^2``."""
        if self.n_tasks < 2 or self.alpha == 0:
            return None
        total: Tensor | None = None
        k = self.n_tasks
        for w in self.column_weights():
            flat = w.reshape(w.shape[0], k, -1)
            term = k * flat.pow(2).sum(dim=(1, 2)) - flat.sum(dim=1).pow(2).sum(dim=1)
            total = term if total is None else total + term
        assert total is not None
        return self.alpha * total


@register_model(
    "cross_stitch",
    "One network column per task; after each hidden layer a learned K x K cross-stitch unit mixes the columns",
    {**_COLUMN_PARAMS},
)
class CrossStitch(_Columns):
    """Cross-stitch networks (Misra et al., CVPR 2016). After hidden layer ``l`` the columns' activations are
    mixed: ``x_k' = sum_j a_l[k, j] x_j``, ``a_l`` initialised to 0.9 on the diagonal and 0.1 spread off it.
    The number of cross-stitch layers is the number of hidden layers. Units per layer: tasks x hidden_units[j]."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        hidden_units: Sequence[int] = (64,),
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas, hidden_units=hidden_units, device=device, dtype=dtype)
        k = self.n_tasks
        self.stitch = nn.Parameter(
            torch.empty(replicas, len(self.hidden_units), k, k, device=device, dtype=dtype)
        )

    def _reset_own(self, generators: Sequence[torch.Generator]) -> None:
        if self.stitch.is_meta:
            return
        k = self.n_tasks
        off = 0.1 / (k - 1) if k > 1 else 0.0
        init = torch.full((k, k), off) + torch.eye(k) * ((0.9 if k > 1 else 1.0) - off)
        with torch.no_grad():
            self.stitch.copy_(init.expand_as(self.stitch))

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        h = self._first(x)
        h = torch.einsum("rkj,rjbh->rkbh", self.stitch[:, 0], h)
        for li, layer in enumerate(self.columns.linears()):
            h = torch.relu(layer(h))
            h = torch.einsum("rkj,rjbh->rkbh", self.stitch[:, li + 1], h)
        return tower_outputs(self.head, h)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.stitch]
