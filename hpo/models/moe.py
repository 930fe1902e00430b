"""Mixture-of-experts models: OMoE, MMoE (Ma et al., KDD 2018) and DSelect-k (Hazimeh et al., NeurIPS 2021).

DSelect-k follows the paper and the authors' code (google-research ``dselect_k_moe``): ``k`` single-expert
selectors, each a product of smooth-step bits over an ``m = ceil(log2 n)``-bit code (most significant bit first),
mixed by a softmax; selector logits start uniform in ``+-gamma/100`` and mixing logits in ``+-0.05``; no
renormalisation when ``n`` is not a power of two (a regulariser pushes each selector's mass onto reachable codes
instead); an optional entropy regulariser drives every selector to one expert. Gates are per example (logits are
a linear map of the input) or static (per task, input-independent).

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
from hpo.models._common import (
    check_positive,
    check_widths,
    factory_kwargs,
    gate_softmax,
    mix,
    mix_rows,
    mlp_blocks,
    native_gated_mix,
    tower_outputs,
)
from hpo.models._layers import (
    Features,
    InputLayer,
    InputSpec,
    ParallelMLP,
    Part,
    TaskSpec,
    _uniform_,
    blocks_first,
)
from hpo.models._registry import register_model

__all__ = ["DSelectK", "MMoE", "OMoE", "binary_codes", "dselect_selectors", "dselect_weights", "smooth_step"]

EPSILON = 1e-6  # inside the entropy's logarithm, as in the authors' code

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
            spec, {"experts": Part(n_experts, h[0]), **self._gate_parts()}, replicas, **kw
        )
        self.experts = ParallelMLP(replicas, n_experts, h[0], h[1:], **kw)
        self.towers = ParallelMLP(replicas, self.n_tasks, h[-1], self.tower_units, output_features=1, **kw)

    def _gate_count(self) -> int:
        return self.n_tasks

    def _gate_parts(self) -> dict[str, Part]:
        """The gates' share of the fused input layer."""
        return {"gates": Part(self.n_gates, self.n_experts, hidden=False)}

    def _gate_weights(self, parts: dict[str, Tensor]) -> Tensor:
        """``(R, B, G, n_experts)`` gate weights from the input layer's parts (softmax: they sum to one)."""
        r, b, _ = parts["gates"].shape
        return gate_softmax(parts["gates"].view(r, b, self.n_gates, -1))

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        if not len(self.experts.hidden) and self._softmax_gates():
            z = self.input.project(x)
            fused = native_gated_mix(z, self.n_experts, self.expert_units[0], self.n_gates)
            if fused is not None:
                mixed, g = fused
                self._read_gates(g, gates)
                return tower_outputs(self.towers, mixed)
        parts = self.input(x)
        g = self._gate_weights(parts)
        self._read_gates(g, gates)
        if len(self.experts.hidden):  # deeper experts: the parallel-block layout their batched products need
            experts = self.experts(torch.relu(blocks_first(parts["experts"], self.n_experts)))
            return tower_outputs(self.towers, mix(g, experts))
        # one-layer experts (the paper's): mix in the input layer's own (R, B, E, h) layout. The same products as
        # `mix`, without transposing the experts' activations forward (and their gradient backward), which cost
        # a fifth of a vectorised paper-size step on the CPU (bench/PROFILE.md)
        r, b, _ = parts["experts"].shape
        experts = torch.relu(parts["experts"]).view(r, b, self.n_experts, -1)
        return tower_outputs(self.towers, mix_rows(g, experts))

    def _softmax_gates(self) -> bool:
        """Whether the input layer is exactly ``[experts | gates]`` and the gates a plain softmax of their logits
        (MMoE, OMoE; not DSelect-k), the layout the compiled mix reads."""
        return (
            list(self.input.parts) == ["experts", "gates"]
            and type(self)._gate_weights is _MoEBase._gate_weights
            and self.input.parts["gates"] == Part(self.n_gates, self.n_experts, hidden=False)
        )

    def _read_gates(self, g: Tensor, gates: dict[str, GateReading] | None) -> None:
        if gates is not None:
            names = tuple(f"expert{i}" for i in range(self.n_experts))
            for k in range(self.n_gates):
                gates[self._gate_name(k)] = GateReading(g[:, :, k], names)

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


def binary_codes(n_experts: int, bits: int, device: Any = None, dtype: Any = None) -> Tensor:
    """``(n_experts, bits)``: row ``j`` is ``j`` in binary, most significant bit first (the authors' order)."""
    j = torch.arange(n_experts, device=device).unsqueeze(-1)
    shifts = torch.arange(bits - 1, -1, -1, device=device)
    return ((j >> shifts) & 1).to(dtype if dtype is not None else torch.float32)


def dselect_selectors(z: Tensor, n_experts: int, gamma: float) -> Tensor:
    """Single-expert selectors ``(..., k, n_experts)`` from codes ``z`` ``(..., k, m)``.

    Selector ``i`` puts ``prod_l [c_jl S(z_il) + (1 - c_jl)(1 - S(z_il))]`` on expert ``j`` with code ``c_j``.
    Over all ``2^m`` codes a selector sums to one; over the ``n_experts`` reachable ones it sums to at most one.
    """
    codes = binary_codes(n_experts, z.shape[-1], z.device, z.dtype)  # (n, m)
    s = smooth_step(z, gamma).unsqueeze(-2)  # (..., k, 1, m)
    return (codes * s + (1 - codes) * (1 - s)).prod(dim=-1)


def dselect_weights(z: Tensor, w: Tensor, n_experts: int, gamma: float) -> Tensor:
    """DSelect-k gate weights ``(..., n_experts)``: the softmax(``w``)-weighted sum of the ``k`` selectors.

    Not renormalised when ``n_experts`` is not a power of two (the authors' code): mass on unreachable codes is
    lost, and :meth:`DSelectK.regularization` pushes it back onto the experts.
    """
    return (gate_softmax(w).unsqueeze(-1) * dselect_selectors(z, n_experts, gamma)).sum(dim=-2)


def dselect_penalty(selectors: Tensor, entropy_reg: float, power_of_two: bool) -> Tensor:
    """Per-replica DSelect-k regulariser from selectors ``(R, [B,] G, k, n)``.

    ``entropy_reg`` times each selector's entropy (summed over gates and selectors; averaged over examples, so
    the weight does not depend on the batch size; the authors' code sums over the batch), plus, when the expert
    count is not a power of two, ``sum_i 1 / sum_j r_ij - k`` per gate: zero once every selector puts all its
    mass on reachable experts (the authors' term without its constant minimum, which changes no gradient).
    """
    r = selectors.shape[0]
    flat = selectors.reshape(r, -1, *selectors.shape[-3:])  # (R, B or 1, G, k, n)
    total = torch.zeros(r, dtype=selectors.dtype, device=selectors.device)
    if entropy_reg > 0:
        entropy = -(flat * torch.log(flat + EPSILON)).sum(dim=(-3, -2, -1))
        total = total + entropy_reg * entropy.mean(dim=1)
    if not power_of_two:
        reach = (1.0 / flat.sum(dim=-1).clamp_min(EPSILON) - 1.0).sum(dim=(-2, -1))
        total = total + reach.mean(dim=1)
    return total


GATE_KINDS = ("example", "static")


@register_model(
    "dselect_k",
    "MMoE with DSelect-k gates: a differentiable sparse choice of k of the n experts per task",
    {
        **_MOE_PARAMS,
        "k": "experts each task's gate selects",
        "gamma": "width of the smooth step (sparsity)",
        "entropy_reg": "weight of the selectors' entropy regulariser (0: none)",
        "gate": "example (logits a linear map of the input) or static (one weight vector per task)",
    },
)
class DSelectK(_MoEBase):
    """DSelect-k (Hazimeh et al., NeurIPS 2021): each task's gate is ``k`` binary-encoded selectors with
    smooth-step bits, mixed by a softmax. Units per layer: as MMoE (gate logits are not hidden units)."""

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
        entropy_reg: float = 0.0,
        gate: str = "example",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self.k = check_positive("k", k)
        if k > n_experts:
            raise ValueError(f"k ({k}) must not exceed n_experts ({n_experts})")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        if not entropy_reg >= 0:
            raise ValueError(f"entropy_reg must be >= 0, got {entropy_reg}")
        if gate not in GATE_KINDS:
            raise ValueError(f"gate must be one of {list(GATE_KINDS)}, got {gate!r}")
        self.gamma, self.entropy_reg, self.gate = float(gamma), float(entropy_reg), gate
        self.code_bits = max(1, math.ceil(math.log2(n_experts)))
        self.power_of_two = n_experts == 2**self.code_bits
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
        self._penalty: Tensor | None = None
        if gate == "static":
            kw = factory_kwargs(device, dtype)
            self.z_static = torch.nn.Parameter(torch.empty(replicas, self.n_gates, k, self.code_bits, **kw))
            self.w_static = torch.nn.Parameter(torch.empty(replicas, self.n_gates, k, **kw))

    def _gate_parts(self) -> dict[str, Part]:
        if self.gate == "static":
            return {}
        g, k, m = self._gate_count(), self.k, self.code_bits
        return {
            "gate_z": Part(g, k * m, hidden=False, init_bound=self.gamma / 100),
            "gate_w": Part(g, k, hidden=False, init_bound=0.05),
        }

    def _reset_own(self, generators: Sequence[torch.Generator]) -> None:
        if self.gate == "static":
            _uniform_(self.z_static, self.gamma / 100, generators)
            _uniform_(self.w_static, 0.05, generators)

    def _gate_weights(self, parts: dict[str, Tensor]) -> Tensor:
        g, k, m = self.n_gates, self.k, self.code_bits
        z: Tensor
        w: Tensor
        if self.gate == "static":
            z, w = self.z_static, self.w_static  # (R, G, k, m), (R, G, k)
        else:
            r, b, _ = parts["gate_z"].shape
            z, w = parts["gate_z"].view(r, b, g, k, m), parts["gate_w"].view(r, b, g, k)
        selectors = dselect_selectors(z, self.n_experts, self.gamma)
        weights = (gate_softmax(w).unsqueeze(-1) * selectors).sum(dim=-2)
        self._penalty = (
            dselect_penalty(selectors, self.entropy_reg, self.power_of_two)
            if self.training and (self.entropy_reg > 0 or not self.power_of_two)
            else None
        )
        if self.gate == "static":
            b = parts["experts"].shape[1]
            weights = weights.unsqueeze(1).expand(-1, b, -1, -1)
        return weights

    def regularization(self) -> Tensor | None:
        """The penalty of the last training forward pass (entropy and reachability; see :func:`dselect_penalty`)."""
        return self._penalty
