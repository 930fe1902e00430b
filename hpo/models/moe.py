"""Mixture-of-experts models: OMoE, MMoE (Ma et al., KDD 2018) and DSelect-k (Hazimeh et al., NeurIPS 2021).

All ``n`` experts and all gates read the input through one fused first layer; deeper expert layers are one
batched matrix product over the experts. Units per layer: ``n_experts x expert_units[j]`` at expert depth ``j``,
then ``n_tasks x tower_units[j]`` at the towers' depths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from hpo.models._base import GateReading, MTLModel
from hpo.models._budget import Block
from hpo.models._common import check_positive, check_widths, factory_kwargs, mix, mlp_blocks, tower_outputs
from hpo.models._layers import Features, InputLayer, InputSpec, ParallelMLP, Part, TaskSpec, blocks_first
from hpo.models._registry import register_model

__all__ = ["DSelectK", "MMoE", "OMoE", "dselect_weights", "smooth_step"]

_MOE_PARAMS = {
    "n_experts": "number of experts",
    "expert_units": "hidden units of each expert, one entry per layer",
    "tower_units": "hidden units of each task tower, one entry per layer (empty: a linear head)",
}


class _MoEBase(MTLModel):
    """Experts shared by all tasks, mixed by ``n_gates`` gates (1 for OMoE, one per task otherwise)."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        n_experts: int = 8,
        expert_units: Sequence[int] = (16,),
        tower_units: Sequence[int] = (8,),
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.n_experts = check_positive("n_experts", n_experts)
        self.expert_units = check_widths("expert_units", expert_units)
        self.tower_units = check_widths("tower_units", tower_units, allow_empty=True)
        self.n_gates = self._gate_count()
        h = self.expert_units
        self.input = InputLayer(
            spec,
            {
                "experts": Part(n_experts, h[0]),
                "gates": Part(self.n_gates, self._gate_logits(), hidden=False),
            },
            replicas,
            **kw,
        )
        self.experts = ParallelMLP(replicas, n_experts, h[0], h[1:], **kw)
        self.towers = ParallelMLP(replicas, self.n_tasks, h[-1], self.tower_units, output_features=1, **kw)

    def _gate_count(self) -> int:
        return self.n_tasks

    def _gate_logits(self) -> int:
        return self.n_experts

    def _gate_weights(self, logits: Tensor) -> Tensor:
        """``(R, B, G, logits) -> (R, B, G, n_experts)`` gate weights that sum to one."""
        return torch.softmax(logits, dim=-1)

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        parts = self.input(x)
        experts = self.experts(torch.relu(blocks_first(parts["experts"], self.n_experts)))
        r, b, _ = parts["gates"].shape
        g = self._gate_weights(parts["gates"].reshape(r, b, self.n_gates, -1).contiguous())
        if gates is not None:
            names = tuple(f"expert{i}" for i in range(self.n_experts))
            for k in range(self.n_gates):
                gates[self._gate_name(k)] = GateReading(g[:, :, k], names)
        return tower_outputs(self.towers, mix(g, experts))

    def _gate_name(self, k: int) -> str:
        return f"gate:{self.tasks[k].name}"

    def hidden_blocks(self) -> Iterator[Block]:
        n, width = self.input.part_shape("experts")
        yield Block(1, "experts", n, width)
        yield from mlp_blocks(self.experts, "experts", 2)
        yield from mlp_blocks(self.towers, "towers", 1 + len(self.expert_units))

    def shared_parameters(self) -> list[torch.nn.Parameter]:
        if len(self.experts.linears()):
            return [self.experts.linears()[-1].weight]
        return [p for p in (self.input.weight_cont, self.input.weight_cat) if p is not None]


@register_model(
    "mmoe", "Multi-gate Mixture-of-Experts: shared experts, one softmax gate per task", _MOE_PARAMS
)
class MMoE(_MoEBase):
    """MMoE: ``y_k = h_k(sum_i softmax(W_gk x)_i f_i(x))``. Units per layer: experts x expert width, then
    tasks x tower width."""


@register_model(
    "omoe", "One-gate Mixture-of-Experts: shared experts, one softmax gate for all tasks", _MOE_PARAMS
)
class OMoE(_MoEBase):
    """OMoE: one gate ``g(x)`` mixes the experts for every task. Units per layer: as MMoE."""

    def _gate_count(self) -> int:
        return 1

    def _gate_name(self, k: int) -> str:
        return "gate:shared"


def smooth_step(t: Tensor, gamma: float) -> Tensor:
    """Hazimeh et al.'s smooth step: 0 below ``-gamma/2``, 1 above ``gamma/2``, a cubic in between."""
    inner = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return torch.where(
        t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), inner)
    )


def dselect_weights(z: Tensor, w: Tensor, n_experts: int, gamma: float) -> Tensor:
    """DSelect-k gate weights from selector codes ``z`` ``(..., k, m)`` and selector logits ``w`` ``(..., k)``.

    Selector ``i`` puts weight ``prod_l [bit_l(j) S(z_il) + (1 - bit_l(j)) (1 - S(z_il))]`` on expert ``j``; the
    gate is the softmax(``w``)-weighted sum of the ``k`` selectors. When ``n_experts`` is not a power of two the
    codes past the last expert are dropped and the weights renormalised, so they still sum to one.
    """
    m = z.shape[-1]
    j = torch.arange(2**m, device=z.device)
    bits = ((j.unsqueeze(-1) >> torch.arange(m, device=z.device)) & 1).to(z.dtype)  # (2^m, m)
    s = smooth_step(z, gamma).unsqueeze(-2)  # (..., k, 1, m)
    per_bit = bits * s + (1 - bits) * (1 - s)  # (..., k, 2^m, m)
    r = per_bit.prod(dim=-1)[..., :n_experts]  # (..., k, n)
    weights = (torch.softmax(w, dim=-1).unsqueeze(-1) * r).sum(dim=-2)  # (..., n)
    if n_experts < 2**m:
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return weights


@register_model(
    "dselect_k",
    "MMoE with DSelect-k gates: a differentiable sparse choice of k of the n experts per task",
    {**_MOE_PARAMS, "k": "experts each task's gate selects", "gamma": "width of the smooth step (sparsity)"},
)
class DSelectK(_MoEBase):
    """DSelect-k (Hazimeh et al., NeurIPS 2021), per-example gating: each task's gate is ``k`` binary-encoded
    selectors with smooth-step bits, mixed by a softmax. Units per layer: as MMoE."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        n_experts: int = 8,
        expert_units: Sequence[int] = (16,),
        tower_units: Sequence[int] = (8,),
        k: int = 2,
        gamma: float = 1.0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self.k = check_positive("k", k)
        if k > n_experts:
            raise ValueError(f"k ({k}) must not exceed n_experts ({n_experts})")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)
        self.code_bits = max(1, math.ceil(math.log2(n_experts)))
        super().__init__(
            spec,
            tasks,
            replicas,
            n_experts=n_experts,
            expert_units=expert_units,
            tower_units=tower_units,
            device=device,
            dtype=dtype,
        )

    def _gate_logits(self) -> int:
        return self.k * self.code_bits + self.k

    def _gate_weights(self, logits: Tensor) -> Tensor:
        z = logits[..., : self.k * self.code_bits].unflatten(-1, (self.k, self.code_bits))
        w = logits[..., self.k * self.code_bits :]
        return dselect_weights(z, w, self.n_experts, self.gamma)
