"""Pieces several architectures share: argument checks, towers, block accounting and gate mixing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from hpo.models._budget import Block
from hpo.models._layers import ParallelMLP
from hpo.models._native import native_ops

__all__ = [
    "check_positive",
    "check_widths",
    "gate_softmax",
    "mix",
    "mix_rows",
    "mlp_blocks",
    "native_gated_mix",
    "tower_outputs",
]


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_widths(name: str, widths: Sequence[int], *, allow_empty: bool = False) -> tuple[int, ...]:
    if isinstance(widths, int):
        widths = (widths,)
    out = tuple(widths)
    if not out and not allow_empty:
        raise ValueError(f"{name} needs at least one layer width, got {list(out)}")
    for w in out:
        check_positive(f"{name} width", w)
    return out


def mlp_blocks(mlp: ParallelMLP, name: str, first_depth: int) -> Iterator[Block]:
    """Blocks of the hidden layers of a parallel MLP, read from its weights, starting at ``first_depth``."""
    for j, layer in enumerate(mlp.linears()):
        _, n, _, width = layer.weight.shape
        yield Block(first_depth + j, name, int(n), int(width))


def tower_outputs(towers: ParallelMLP, inputs: Tensor) -> Tensor:
    """Run the ``K`` towers on ``(R, K|1, B, h)`` and return ``(R, B, K)`` raw outputs."""
    return towers(inputs).squeeze(-1).transpose(1, 2)


def mix(gate_weights: Tensor, experts: Tensor) -> Tensor:
    """Gate-weighted sum of experts: ``(R, B, G, E)`` x ``(R, E, B, h)`` -> ``(R, G, B, h)``."""
    return torch.einsum("rbge,rebh->rgbh", gate_weights, experts)


# Widest expert layer (experts x units, per example) mixed by :class:`_MixRows` (one broadcast product and sum per
# gate) instead of a batched matrix product. The batched product runs one tiny (G x E)(E x h) product per example,
# and below this width the per-product overhead dominates: at the paper's 8 x 16 the broadcast form takes about half
# the time forward and backward on the CPU; from 8 x 32 on the batched product is faster (bench/PROFILE.md). A
# fixed width, not a timing, so the floating-point order never depends on the machine's load.
BROADCAST_MIX_MAX_WIDTH = 128


class _MixRows(torch.autograd.Function):
    """``out[r, g, b] = sum_e w[r, b, g, e] * x[r, b, e]`` with a hand-written backward, one gate at a time.

    Autograd's own backward of the broadcast form builds two ``(R, B, G, E, h)`` products (and the forward a
    third) whose strided reads cost more than the arithmetic, several times this function's time, where no
    intermediate is wider than the experts themselves (bench/PROFILE.md has the figures). The output is written blocks-first, the layout the towers' batched products read.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(w, x)
        return torch.stack([(w[:, :, k, :, None] * x).sum(-2) for k in range(w.shape[2])], dim=1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
        w, x = ctx.saved_tensors
        gates = range(w.shape[2])
        grad_w = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_w = torch.stack([(x * grad_out[:, k, :, None, :]).sum(-1) for k in gates], dim=2)
        if ctx.needs_input_grad[1]:
            grad_x = w[:, :, 0, :, None] * grad_out[:, 0, :, None, :]
            for k in gates[1:]:
                grad_x.addcmul_(w[:, :, k, :, None], grad_out[:, k, :, None, :])
        return grad_w, grad_x


def mix_rows(gate_weights: Tensor, experts: Tensor) -> Tensor:
    """Gate-weighted sum of experts held in the rows' own layout: ``(R, B, G, E)`` x ``(R, B, E, h)`` ->
    ``(R, G, B, h)`` (blocks first, as the towers read it).

    Narrow expert layers are mixed gate by gate with a hand-written backward (the sum over experts runs in expert
    order); wider ones by one batched matrix product. On the CPU, MMoE and OMoE use :func:`native_gated_mix`
    instead where it applies; this is their form on CUDA, under ``torch.compile`` and without the kernel.
    """
    e, h = experts.shape[-2:]
    if e * h <= BROADCAST_MIX_MAX_WIDTH:
        out: Tensor = _MixRows.apply(gate_weights, experts)
        return out
    return torch.matmul(gate_weights, experts).transpose(1, 2)


class _NativeGatedMix(torch.autograd.Function):
    """Gate softmax and mix of one-layer experts in one compiled pass each way (``_native.cpp``: ``moe_mix``)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, experts: int, units: int, gates: int) -> tuple[Tensor, Tensor]:
        ops = native_ops()
        assert ops is not None
        out, weights = ops.moe_mix(z, experts, units, gates)
        ctx.save_for_backward(z, weights)
        ctx.dims = (experts, units, gates)
        # the weights are returned for gate readings; the loss reaches them through ``out``
        ctx.mark_non_differentiable(weights)
        return out, weights

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, _: Tensor | None) -> tuple[Tensor, None, None, None]:
        z, weights = ctx.saved_tensors
        ops = native_ops()
        assert ops is not None
        return ops.moe_mix_backward(z, weights, grad_out, *ctx.dims), None, None, None


def native_gated_mix(z: Tensor, experts: int, units: int, gates: int) -> tuple[Tensor, Tensor] | None:
    """``(R, G, B, units)`` mixed experts and ``(R, B, G, experts)`` gate weights from the fused first layer's
    whole output ``z`` = ``[experts x units pre-activations | gates x experts logits]``, by the compiled kernel;
    ``None`` where it does not apply (not the CPU, not float32/64, no kernel, or inside ``torch.compile``, whose
    own fusion of the PyTorch form is kept), and the caller then takes the PyTorch path.

    Why: in PyTorch the softmax, ReLU and mix are a dozen operations, each a dispatch and a pass over
    ``(R, B, E, h)`` intermediates that leave the caches once 16 replicas are stacked; the kernel reads each row
    once forward and writes its gradient once backward (bench/PROFILE.md "Seventh pass"). The same maths, summed
    in another order: float32 results agree with the PyTorch form to rounding, not bit for bit.
    """
    if (
        z.device.type != "cpu"
        or z.dtype not in (torch.float32, torch.float64)
        or torch.compiler.is_compiling()
        or native_ops() is None
    ):
        return None
    out, weights = _NativeGatedMix.apply(z, experts, units, gates)
    return out, weights


class _GateSoftmax(torch.autograd.Function):
    """Softmax over the last axis, for gates of a handful of experts.

    ``torch.softmax`` over an axis of 2-16 entries runs its vectorised kernel on rows too short to fill it, taking
    two to three times as long as these few elementwise passes (bench/PROFILE.md has the figures). Same maths: ``exp(z - max z) / sum``,
    backward ``y * (g - sum(g * y))``.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor) -> Tensor:
        e = (logits - logits.amax(-1, keepdim=True)).exp_()
        y = e.div_(e.sum(-1, keepdim=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return y * (grad_out - (grad_out * y).sum(-1, keepdim=True))


def gate_softmax(logits: Tensor) -> Tensor:
    """Gate weights from gate logits (softmax over the last axis); see :class:`_GateSoftmax`."""
    out: Tensor = _GateSoftmax.apply(logits)
    return out


def factory_kwargs(device: Any, dtype: Any) -> dict[str, Any]:
    return {"device": device, "dtype": dtype}
