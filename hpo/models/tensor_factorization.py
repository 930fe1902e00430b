"""Tensor-Factorization multi-task networks (Yang & Hospedales, ICLR 2017), Tucker form.

Each hidden layer's weights of all ``K`` tasks form one ``m x n x K`` tensor ``W = S x1 U1 x2 U2 x3 U3`` with core
``S`` (``r1 x r2 x r3``), ``U1`` (``m x r1``), ``U2`` (``n x r2``) and ``U3`` (``K x r3``); task ``k`` uses the slice
``W[:, :, k] = U1 M_k U2^T`` with ``M_k = S x3 U3[k]``. The first layer never builds ``W``: the input is projected
onto ``U1`` by the fused sum-of-rows layer, then through ``M_k`` and ``U2^T``. Deeper layers build the small
``W[:, :, k]`` and apply all tasks in one batched product.

Units per layer: ``n_tasks x hidden_units[j]`` (each task's layer has ``hidden_units[j]`` units).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hpo.models._base import GateReading, MTLModel
from hpo.models._budget import Block
from hpo.models._common import check_positive, check_widths, factory_kwargs, tower_outputs
from hpo.models._layers import Features, InputLayer, InputSpec, ParallelMLP, Part, TaskSpec, _uniform_
from hpo.models._registry import register_model

__all__ = ["TensorFactorization", "TuckerLayer"]


class TuckerLayer(nn.Module):
    """Factors of one layer: ``U1`` (absent for the first layer, where the input layer holds it), ``S``, ``U2``,
    ``U3`` and a bias per task. Initialised so that ``W[:, :, k]`` has ``nn.Linear``'s variance ``1 / (3 m)``."""

    def __init__(
        self,
        replicas: int,
        n_tasks: int,
        m: int,
        n: int,
        ranks: tuple[int, int, int],
        *,
        first: bool,
        kw: dict[str, Any],
    ) -> None:
        super().__init__()
        r1, r2, r3 = ranks
        self.m, self.n, self.ranks, self.n_tasks = m, n, ranks, n_tasks
        self.u1 = None if first else nn.Parameter(torch.empty(replicas, m, r1, **kw))
        self.core = nn.Parameter(torch.empty(replicas, r1, r2, r3, **kw))
        self.u2 = nn.Parameter(torch.empty(replicas, n, r2, **kw))
        self.u3 = nn.Parameter(torch.empty(replicas, n_tasks, r3, **kw))
        self.bias = nn.Parameter(torch.empty(replicas, n_tasks, n, **kw))

    def reset_parameters(self, generators: Sequence[torch.Generator]) -> None:
        r1, r2, r3 = self.ranks
        if self.u1 is not None:
            _uniform_(self.u1, 1.0 / math.sqrt(self.m), generators)
        _uniform_(self.core, math.sqrt(3.0 / r1), generators)
        _uniform_(self.u2, math.sqrt(3.0 / r2), generators)
        _uniform_(self.u3, math.sqrt(3.0 / r3), generators)
        _uniform_(self.bias, 1.0 / math.sqrt(self.m), generators)

    def task_cores(self) -> Tensor:
        """``M_k U2^T`` for every task: ``(R, K, r1, n)``."""
        m = torch.einsum("rabc,rkc->rkab", self.core, self.u3)
        return torch.matmul(m, self.u2.transpose(1, 2).unsqueeze(1))

    def task_weights(self, u1: Tensor) -> Tensor:
        """The full ``W[:, :, k]`` for every task: ``(R, K, m, n)``, given ``U1`` ``(R, m, r1)``."""
        return torch.matmul(u1.unsqueeze(1), self.task_cores())


@register_model(
    "tensor_factorization",
    "One column per task whose layer weights are slices of a Tucker-factorised m x n x K tensor",
    {
        "hidden_units": "hidden units of each task's layer, one entry per layer",
        "r1": "Tucker rank along the layer input (capped at the input width)",
        "r2": "Tucker rank along the layer output (capped at the layer width)",
        "r3": "Tucker rank along the task axis (capped at the number of tasks)",
    },
)
class TensorFactorization(MTLModel):
    """Tucker-factorised task columns. Units per layer: tasks x hidden_units[j]."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        hidden_units: Sequence[int] = (64,),
        r1: int = 16,
        r2: int = 16,
        r3: int = 2,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.hidden_units = check_widths("hidden_units", hidden_units)
        for name, v in (("r1", r1), ("r2", r2), ("r3", r3)):
            check_positive(name, v)
        k = self.n_tasks
        dims = [spec.one_hot_width, *self.hidden_units]
        self.layers = nn.ModuleList()
        for j, (m, n) in enumerate(itertools.pairwise(dims)):
            ranks = (min(r1, m), min(r2, n), min(r3, k))
            self.layers.append(TuckerLayer(replicas, k, m, n, ranks, first=(j == 0), kw=kw))
        first = self.layers[0]
        assert isinstance(first, TuckerLayer)
        # U1 of the first layer is the fused input layer's (bias-free) weight
        self.input = InputLayer(
            spec, {"u1": Part(1, first.ranks[0], hidden=False)}, replicas, bias=False, **kw
        )
        self.head = ParallelMLP(replicas, k, self.hidden_units[-1], (), output_features=1, **kw)

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        first = self.layers[0]
        assert isinstance(first, TuckerLayer)
        z = self.input(x)["u1"].unsqueeze(1)  # (R, 1, B, r1)
        h = torch.relu(torch.matmul(z, first.task_cores()) + first.bias.unsqueeze(2))  # (R, K, B, n)
        for layer in self.layers[1:]:
            assert isinstance(layer, TuckerLayer) and layer.u1 is not None
            h = torch.relu(torch.matmul(h, layer.task_weights(layer.u1)) + layer.bias.unsqueeze(2))
        return tower_outputs(self.head, h)

    def hidden_blocks(self) -> Iterator[Block]:
        for j, layer in enumerate(self.layers):
            assert isinstance(layer, TuckerLayer)
            _r, k, n = layer.bias.shape
            yield Block(j + 1, "columns", int(k), int(n))

    def shared_parameters(self) -> list[nn.Parameter]:
        last = self.layers[-1]
        assert isinstance(last, TuckerLayer)
        return [last.core]
