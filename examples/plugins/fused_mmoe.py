"""The fast route: MMoE written with hpo's fused, replica-aware building blocks (``hpo.models.api``).

Every tensor carries a leading replica axis R (one copy of the model per seed, trained as one model) and
parallel blocks (experts, towers) a block axis E, so the whole model is a few batched matrix products. The
budget accounting reads the built modules in ``hidden_blocks``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from hpo.models.api import (
    Block,
    Features,
    GateReading,
    InputLayer,
    InputSpec,
    MTLModel,
    ParallelMLP,
    Part,
    TaskSpec,
    blocks_first,
    check_positive,
    factory_kwargs,
    mix,
    mlp_blocks,
    register_model,
    tower_outputs,
)


@register_model(
    "my_mmoe_fused",
    "MMoE on hpo's fused building blocks (examples/plugins)",
    {"n_experts": "number of experts", "expert_units": "units per expert", "tower_units": "units per tower"},
)
class MyMMoE(MTLModel):
    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        n_experts: int = 8,
        expert_units: int = 16,
        tower_units: int = 8,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.n_experts = check_positive("n_experts", n_experts)
        check_positive("expert_units", expert_units)
        check_positive("tower_units", tower_units)
        # one fused first layer: the experts' first layer and the gates' logits read the input once
        parts = {
            "experts": Part(n_experts, expert_units),
            "gates": Part(self.n_tasks, n_experts, hidden=False),
        }
        self.input = InputLayer(spec, parts, replicas, **kw)
        self.towers = ParallelMLP(
            replicas, self.n_tasks, expert_units, (tower_units,), output_features=1, **kw
        )

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        parts = self.input(x)  # each part (R, B, n * width)
        experts = torch.relu(blocks_first(parts["experts"], self.n_experts))  # (R, E, B, h)
        r, b, _ = parts["gates"].shape
        weights = torch.softmax(parts["gates"].view(r, b, self.n_tasks, self.n_experts), dim=-1)
        if gates is not None:
            for k, task in enumerate(self.tasks):
                gates[f"gate:{task.name}"] = GateReading(
                    weights[:, :, k], tuple(f"e{i}" for i in range(self.n_experts))
                )
        return tower_outputs(self.towers, mix(weights, experts))  # (R, B, K)

    def hidden_blocks(self) -> Iterator[Block]:
        yield Block(1, "experts", *self.input.part_shape("experts"))
        yield from mlp_blocks(self.towers, "towers", 2)
