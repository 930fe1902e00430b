"""Shared-Bottom: one bottom network shared by all tasks, one tower per task (hard parameter sharing)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hpo.models._base import GateReading, MTLModel
from hpo.models._budget import Block
from hpo.models._common import check_widths, factory_kwargs, mlp_blocks, tower_outputs
from hpo.models._layers import Features, InputLayer, InputSpec, ParallelMLP, Part, TaskSpec
from hpo.models._registry import register_model

__all__ = ["SharedBottom"]


@register_model(
    "shared_bottom",
    "One shared bottom network and a tower per task: y_k = h_k(f(x))",
    {
        "bottom_units": "hidden units of the shared bottom, one entry per layer",
        "tower_units": "hidden units of each task tower, one entry per layer (empty: a linear head)",
    },
)
class SharedBottom(MTLModel):
    """Hard parameter sharing (Caruana, 1993). Units per layer: bottom_units[j] at the bottom's depths, then
    tasks x tower_units[j]."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        bottom_units: Sequence[int] = (113,),
        tower_units: Sequence[int] = (8,),
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.bottom_units = check_widths("bottom_units", bottom_units)
        self.tower_units = check_widths("tower_units", tower_units, allow_empty=True)
        b = self.bottom_units
        self.input = InputLayer(spec, {"bottom": Part(1, b[0])}, replicas, **kw)
        self.bottom = ParallelMLP(replicas, 1, b[0], b[1:], **kw)
        self.towers = ParallelMLP(replicas, self.n_tasks, b[-1], self.tower_units, output_features=1, **kw)

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        h = torch.relu(self.input(x)["bottom"]).unsqueeze(1)  # (R, 1, B, h)
        return tower_outputs(self.towers, self.bottom(h))

    def hidden_blocks(self) -> Iterator[Block]:
        yield Block(1, "bottom", *self.input.part_shape("bottom"))
        yield from mlp_blocks(self.bottom, "bottom", 2)
        yield from mlp_blocks(self.towers, "towers", 1 + len(self.bottom_units))

    def shared_parameters(self) -> list[nn.Parameter]:
        if len(self.bottom.linears()):
            return [self.bottom.linears()[-1].weight]
        return [p for p in (self.input.weight_cont, self.input.weight_cat) if p is not None]
