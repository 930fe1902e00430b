"""Customised Gate Control (CGC) and Progressive Layered Extraction (PLE), Tang et al., RecSys 2020.

Each extraction level holds ``n_specific`` experts per task and ``n_shared`` shared experts, all computed in one
batched matrix product. Experts are numbered task by task, shared ones last: task ``k`` owns experts
``k*n_specific .. (k+1)*n_specific - 1``. Task ``k``'s gate selects over its own experts plus the shared ones; at
every level but the last a shared gate selects over all experts of the level and feeds the next level's shared
experts, while task ``k``'s gate output feeds the next level's task-``k`` experts (and its gate).

Units per layer: ``(n_tasks x n_specific + n_shared) x expert_units[j]`` at each expert depth of each level, then
``n_tasks x tower_units[j]`` for the towers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hpo.models._base import GateReading, MTLModel
from hpo.models._budget import Block
from hpo.models._common import (
    check_positive,
    check_widths,
    factory_kwargs,
    gate_softmax,
    mix,
    mlp_blocks,
    tower_outputs,
)
from hpo.models._layers import (
    Features,
    InputLayer,
    InputSpec,
    ParallelLinear,
    ParallelMLP,
    Part,
    TaskSpec,
    blocks_first,
)
from hpo.models._registry import register_model

__all__ = ["CGC", "PLE"]

_PLE_PARAMS = {
    "n_specific": "task-specific experts per task at each level",
    "n_shared": "shared experts at each level",
    "expert_units": "hidden units of each expert, one entry per layer",
    "tower_units": "hidden units of each task tower, one entry per layer (empty: a linear head)",
}


class _Level(nn.Module):
    """One extraction level. Level 0 reads the input; later levels read the ``K + 1`` streams of the level below."""

    input: InputLayer
    expert_in: ParallelLinear
    task_gates: ParallelLinear
    shared_gate: ParallelLinear | None
    experts: ParallelMLP
    stream_of_expert: Tensor
    selection: Tensor

    def __init__(
        self,
        spec: InputSpec,
        n_tasks: int,
        replicas: int,
        n_specific: int,
        n_shared: int,
        widths: tuple[int, ...],
        *,
        first: bool,
        in_features: int,
        shared_gate: bool,
        kw: dict[str, Any],
    ) -> None:
        super().__init__()
        self.n_tasks, self.n_specific, self.n_shared = n_tasks, n_specific, n_shared
        self.n_experts = n_tasks * n_specific + n_shared
        self.has_shared_gate = shared_gate
        self.first = first
        n_sel = n_specific + n_shared
        if first:
            parts = {
                "experts": Part(self.n_experts, widths[0]),
                "task_gates": Part(n_tasks, n_sel, hidden=False),
            }
            if shared_gate:
                parts["shared_gate"] = Part(1, self.n_experts, hidden=False)
            self.input = InputLayer(spec, parts, replicas, **kw)
        else:
            self.expert_in = ParallelLinear(replicas, self.n_experts, in_features, widths[0], **kw)
            self.task_gates = ParallelLinear(replicas, n_tasks, in_features, n_sel, **kw)
            self.shared_gate = (
                ParallelLinear(replicas, 1, in_features, self.n_experts, **kw) if shared_gate else None
            )
        self.experts = ParallelMLP(replicas, self.n_experts, widths[0], widths[1:], **kw)
        # stream feeding each expert: task k's experts read stream k, shared experts read stream K (the shared one)
        stream = [k for k in range(n_tasks) for _ in range(n_specific)] + [n_tasks] * n_shared
        self.register_buffer("stream_of_expert", torch.tensor(stream, dtype=torch.long), persistent=False)
        # the experts each task gate selects over: its own, then the shared ones
        sel = [
            [k * n_specific + i for i in range(n_specific)]
            + [n_tasks * n_specific + i for i in range(n_shared)]
            for k in range(n_tasks)
        ]
        self.register_buffer("selection", torch.tensor(sel, dtype=torch.long), persistent=False)

    def expert_names(self, tasks: Sequence[TaskSpec]) -> list[str]:
        names = [f"{t.name}.expert{i}" for t in tasks for i in range(self.n_specific)]
        return names + [f"shared.expert{i}" for i in range(self.n_shared)]

    def forward(self, x: Features | Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Return expert outputs ``(R, E, B, h)``, task gate weights ``(R, B, K, n_sel)`` and the shared gate's."""
        if self.first:
            assert isinstance(x, Features)
            parts = self.input(x)
            h = torch.relu(blocks_first(parts["experts"], self.n_experts))
            r, b, _ = parts["task_gates"].shape
            task_logits = parts["task_gates"].view(r, b, self.n_tasks, -1)
            shared_logits = parts["shared_gate"].view(r, b, 1, -1) if self.has_shared_gate else None
        else:
            assert isinstance(x, Tensor)  # streams (R, K + 1, B, h)
            h = torch.relu(self.expert_in(x.index_select(1, self.stream_of_expert)))
            task_logits = self.task_gates(x[:, : self.n_tasks]).transpose(1, 2)
            shared_logits = (
                self.shared_gate(x[:, self.n_tasks :]).transpose(1, 2)
                if self.shared_gate is not None
                else None
            )
        experts = self.experts(h)
        task_w = gate_softmax(task_logits)
        shared_w = gate_softmax(shared_logits) if shared_logits is not None else None
        return experts, task_w, shared_w

    def task_mixing(self, task_w: Tensor) -> Tensor:
        """Scatter ``(R, B, K, n_sel)`` selected weights into ``(R, B, K, E)`` over all experts of the level."""
        r, b, k, s = task_w.shape
        full = task_w.new_zeros(r, b, k, self.n_experts)
        return full.scatter(-1, self.selection.expand(r, b, k, s), task_w)


class _PLEBase(MTLModel):
    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        n_levels: int = 2,
        n_specific: int = 2,
        n_shared: int = 2,
        expert_units: Sequence[int] = (16,),
        tower_units: Sequence[int] = (8,),
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.n_levels = check_positive("n_levels", n_levels)
        self.n_specific = check_positive("n_specific", n_specific)
        self.n_shared = check_positive("n_shared", n_shared)
        self.expert_units = check_widths("expert_units", expert_units)
        self.tower_units = check_widths("tower_units", tower_units, allow_empty=True)
        self.levels = nn.ModuleList(
            _Level(
                spec,
                self.n_tasks,
                replicas,
                n_specific,
                n_shared,
                self.expert_units,
                first=(i == 0),
                in_features=self.expert_units[-1],
                shared_gate=(i < n_levels - 1),
                kw=kw,
            )
            for i in range(n_levels)
        )
        self.towers = ParallelMLP(
            replicas, self.n_tasks, self.expert_units[-1], self.tower_units, output_features=1, **kw
        )

    def _levels(self) -> list[_Level]:
        return [m for m in self.levels if isinstance(m, _Level)]

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        inp: Features | Tensor = x
        task_out: Tensor | None = None
        for li, level in enumerate(self._levels()):
            experts, task_w, shared_w = level(inp)
            task_out = mix(level.task_mixing(task_w), experts)  # (R, K, B, h)
            if gates is not None:
                names = level.expert_names(self.tasks)
                for k, t in enumerate(self.tasks):
                    sel = tuple(names[i] for i in level.selection[k].tolist())
                    gates[f"level{li}.gate:{t.name}"] = GateReading(task_w[:, :, k], sel)
                if shared_w is not None:
                    gates[f"level{li}.gate:shared"] = GateReading(shared_w[:, :, 0], tuple(names))
            if shared_w is not None:
                shared_out = mix(shared_w, experts)  # (R, 1, B, h)
                inp = torch.cat([task_out, shared_out], dim=1)
        assert task_out is not None
        return tower_outputs(self.towers, task_out)

    def hidden_blocks(self) -> Iterator[Block]:
        depth = 1
        for li, level in enumerate(self._levels()):
            if level.first:
                n, width = level.input.part_shape("experts")
            else:
                n, width = level.expert_in.n, level.expert_in.out_features
            yield Block(depth, f"level{li}.experts", n, width)
            yield from mlp_blocks(level.experts, f"level{li}.experts", depth + 1)
            depth += 1 + len(level.experts.linears())
        yield from mlp_blocks(self.towers, "towers", depth)

    def shared_parameters(self) -> list[nn.Parameter]:
        last = self._levels()[-1]
        if len(last.experts.linears()):
            return [last.experts.linears()[-1].weight]
        if last.first:
            return [p for p in (last.input.weight_cont, last.input.weight_cat) if p is not None]
        return [last.expert_in.weight]


@register_model(
    "ple",
    "Progressive Layered Extraction: stacked CGC levels with task-specific and shared experts and a shared gate",
    {"n_levels": "extraction levels (>= 1)", **_PLE_PARAMS},
)
class PLE(_PLEBase):
    """PLE with ``n_levels`` extraction levels. Units per layer: (tasks x n_specific + n_shared) x expert width
    at every expert depth of every level, then tasks x tower width."""


@register_model(
    "cgc",
    "Customised Gate Control: task-specific plus shared experts, one gate per task (PLE with one level)",
    _PLE_PARAMS,
)
class CGC(_PLEBase):
    """CGC: PLE with a single extraction level. Units per layer: (tasks x n_specific + n_shared) x expert
    width, then tasks x tower width."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        n_specific: int = 2,
        n_shared: int = 2,
        expert_units: Sequence[int] = (16,),
        tower_units: Sequence[int] = (8,),
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            spec,
            tasks,
            replicas,
            n_levels=1,
            n_specific=n_specific,
            n_shared=n_shared,
            expert_units=expert_units,
            tower_units=tower_units,
            device=device,
            dtype=dtype,
        )
