"""The any-module route: MMoE as a plain ``torch.nn.Module``, the way most papers' code is written.

hpo trains many seeds of it at once through ``torch.func`` (each seed's parameters stacked, the module evaluated
under ``vmap``) and counts its hidden units from its ``nn.Linear`` layers: each expert's layer at depth 1, each
tower's hidden layer at depth 2; the last layer of each tower produces an output and is not hidden, and the
gates' logits are named in ``not_hidden``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hpo.models.api import Features, InputSpec, TaskSpec, register_module


@register_module(
    "my_mmoe_module",
    "MMoE as a plain nn.Module (examples/plugins)",
    {"n_experts": "number of experts", "expert_units": "units per expert", "tower_units": "units per tower"},
)
class PlainMMoE(nn.Module):
    not_hidden = ("gates",)  # gate logits are not hidden units (as for hpo's own gated models)

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        *,
        n_experts: int = 8,
        expert_units: int = 16,
        tower_units: int = 8,
    ) -> None:
        super().__init__()
        if n_experts < 1 or expert_units < 1 or tower_units < 1:
            raise ValueError(f"sizes must be positive: {n_experts}, {expert_units}, {tower_units}")
        self.vocab = spec.vocab_size
        width = spec.one_hot_width  # continuous columns plus the one-hot encoding of the categorical ones
        self.experts = nn.ModuleList(nn.Linear(width, expert_units) for _ in range(n_experts))
        self.gates = nn.ModuleList(nn.Linear(width, n_experts) for _ in tasks)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(expert_units, tower_units), nn.ReLU(), nn.Linear(tower_units, 1))
            for _ in tasks
        )

    def forward(self, x: Features) -> Tensor:
        dtype = self.experts[0].weight.dtype
        inputs = [] if x.cont is None else [x.cont.to(dtype)]
        if (
            x.cat is not None
        ):  # each row's codes are distinct (one per column): scattering ones is its one-hot
            zeros = torch.zeros(x.cat.shape[0], self.vocab, dtype=dtype, device=x.cat.device)
            inputs.append(zeros.scatter(1, x.cat, torch.ones(x.cat.shape, dtype=dtype, device=x.cat.device)))
        h = torch.cat(inputs, dim=-1)  # (batch, width)
        experts = torch.stack([torch.relu(e(h)) for e in self.experts], dim=1)  # (batch, E, units)
        outs = []
        for gate, tower in zip(self.gates, self.towers, strict=True):
            weights = torch.softmax(gate(h), dim=-1).unsqueeze(-1)  # (batch, E, 1)
            outs.append(tower((weights * experts).sum(dim=1)))  # (batch, 1)
        return torch.cat(outs, dim=-1)  # (batch, tasks)
