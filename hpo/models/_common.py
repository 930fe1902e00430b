"""Pieces several architectures share: argument checks, towers, block accounting and gate mixing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from hpo.models._budget import Block
from hpo.models._layers import ParallelMLP

__all__ = ["check_positive", "check_widths", "mix", "mix_rows", "mlp_blocks", "tower_outputs"]


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


# Widest expert layer (experts x units, per example) mixed by a broadcast product and a sum instead of a batched
# matrix product. The batched product runs one tiny (G x E)(E x h) product per example, and below this width the
# per-product overhead dominates: at the paper's 8 x 16 the broadcast form takes about half the time forward and
# backward on the CPU; from 8 x 32 on the batched product is faster (bench/PROFILE.md). A fixed width, not a
# timing, so the floating-point order never depends on the machine's load.
BROADCAST_MIX_MAX_WIDTH = 128


def mix_rows(gate_weights: Tensor, experts: Tensor) -> Tensor:
    """Gate-weighted sum of experts in the rows' own layout: ``(R, B, G, E)`` x ``(R, B, E, h)`` -> ``(R, B, G, h)``.

    Narrow expert layers are mixed by broadcasting (the sum over experts runs in expert order); wider ones by one
    batched matrix product.
    """
    e, h = experts.shape[-2:]
    if e * h <= BROADCAST_MIX_MAX_WIDTH:
        return (gate_weights.unsqueeze(-1) * experts.unsqueeze(-3)).sum(-2)
    return torch.matmul(gate_weights, experts)


def factory_kwargs(device: Any, dtype: Any) -> dict[str, Any]:
    return {"device": device, "dtype": dtype}
