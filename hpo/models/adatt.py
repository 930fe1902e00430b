"""AdaTT (Li et al., KDD 2023, "Adaptive Task-to-Task Fusion Network for Multitask Learning in Recommendations"),
the AdaTT-sp variant of the authors' code (facebookresearch/AdaTT, ``mtl_lib.py``), written only with the public
extension API (:mod:`hpo.models.api`), as a plugin would be.

Each of ``L`` fusion levels has ``m`` experts per task (``T * m`` in all). At level ``l`` expert ``e`` of task
``t`` reads task ``t``'s input (at level 0 every task's input is ``x``), and task ``t``'s fusion unit mixes *all*
experts with a softmax gate computed from its own input, plus a residual of its own experts::

    f_t = sum_e softmax(W_t h_t)_e E_e(h_{t(e)}) + (sum_j v_tj E_tj(h_t)   if m > 1,   E_t(h_t) if m = 1)

``v`` starts uniform in ``+-sqrt(1/m)`` as in the authors' code. Experts are one ReLU layer per level
(``expert_units[l]`` units; the authors' experts may be deeper MLPs within a level, not supported here); a tower
per task follows the last level. Units per layer: ``T * m * expert_units[l]`` at depth ``l + 1``, then
``T * tower_units[j]``; gate logits are not hidden units (as for every gated model here).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

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
    blocks_first,
    check_positive,
    check_widths,
    factory_kwargs,
    gate_softmax,
    init_uniform,
    mlp_blocks,
    register_model,
    tower_outputs,
)

__all__ = ["AdaTT"]


@register_model(
    "adatt",
    "AdaTT-sp: per-task experts fused across tasks by per-task gates, with a residual of each task's own experts",
    {
        "n_task_experts": "experts per task at every fusion level",
        "expert_units": "hidden units of each expert, one entry per fusion level",
        "tower_units": "hidden units of each task tower, one entry per layer (empty: a linear head)",
        "residual": "add each task's own experts to its fusion unit (the authors: always on for best results)",
    },
)
class AdaTT(MTLModel):
    """AdaTT-sp. Units per layer: tasks x n_task_experts x expert_units[l] per fusion level, then the towers."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        n_task_experts: int = 2,
        expert_units: Sequence[int] = (16,),
        tower_units: Sequence[int] = (8,),
        residual: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.m = check_positive("n_task_experts", n_task_experts)
        self.expert_units = check_widths("expert_units", expert_units)
        self.tower_units = check_widths("tower_units", tower_units, allow_empty=True)
        self.residual = bool(residual)
        t, e, h = self.n_tasks, self.n_tasks * self.m, self.expert_units
        self.input = InputLayer(
            spec, {"experts": Part(e, h[0]), "gates": Part(t, e, hidden=False)}, replicas, **kw
        )
        self.experts = nn.ModuleList(
            ParallelLinear(replicas, e, a, b, **kw) for a, b in itertools.pairwise(h)
        )
        self.gates = nn.ModuleList(ParallelLinear(replicas, t, a, e, **kw) for a in h[:-1])
        self.self_weights = (
            nn.Parameter(torch.empty(replicas, len(h), t, self.m, **kw))
            if self.residual and self.m > 1
            else None
        )
        self.towers = ParallelMLP(replicas, t, h[-1], self.tower_units, output_features=1, **kw)

    def _reset_own(self, generators: Sequence[torch.Generator]) -> None:
        if self.self_weights is not None:
            init_uniform(self.self_weights, math.sqrt(1.0 / self.m), generators)

    def _fuse(
        self, level: int, experts: Tensor, gate_logits: Tensor, gates: dict[str, GateReading] | None
    ) -> Tensor:
        """``(R, E, B, h)`` experts and ``(R, T, B, E)`` gate logits -> ``(R, T, B, h)`` fusion-unit outputs."""
        g = gate_softmax(gate_logits)
        if gates is not None:
            names = tuple(
                f"{self.tasks[i // self.m].name}.expert{i % self.m}" for i in range(experts.shape[1])
            )
            for k, task in enumerate(self.tasks):
                gates[f"level{level}:{task.name}"] = GateReading(g[:, k], names)
        fused = torch.einsum("rtbe,rebh->rtbh", g, experts)
        if not self.residual:
            return fused
        r, _, b, h = experts.shape
        own = experts.view(r, self.n_tasks, self.m, b, h)
        if self.self_weights is None:
            return fused + own[:, :, 0]
        return fused + torch.einsum("rtj,rtjbh->rtbh", self.self_weights[:, level], own)

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        parts = self.input(x)
        r, b, _ = parts["gates"].shape
        t, e = self.n_tasks, self.n_tasks * self.m
        experts = torch.relu(blocks_first(parts["experts"], e))  # (R, E, B, h0): every expert reads x
        h = self._fuse(0, experts, parts["gates"].view(r, b, t, e).transpose(1, 2), gates)
        for level, (expert_layer, gate_layer) in enumerate(
            zip(self.experts, self.gates, strict=True), start=1
        ):
            inputs = h.repeat_interleave(self.m, dim=1)  # expert e reads its task's fusion output
            experts = torch.relu(expert_layer(inputs))
            h = self._fuse(level, experts, gate_layer(h), gates)
        return tower_outputs(self.towers, h)

    def hidden_blocks(self) -> Iterator[Block]:
        n, width = self.input.part_shape("experts")
        yield Block(1, "experts", n, width)
        for depth, layer in enumerate(self.expert_layers(), start=2):
            _, n, _, width = layer.weight.shape
            yield Block(depth, "experts", int(n), int(width))
        yield from mlp_blocks(self.towers, "towers", 1 + len(self.expert_units))

    def expert_layers(self) -> list[ParallelLinear]:
        """The experts of fusion levels 1..L-1, typed."""
        return [m for m in self.experts if isinstance(m, ParallelLinear)]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in (self.input.weight_cont, self.input.weight_cat) if p is not None]
