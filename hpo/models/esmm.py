"""ESMM (Ma et al., SIGIR 2018, "Entire Space Multi-Task Model: An Effective Approach for Estimating Post-Click
Conversion Rate"), written only with the public extension API (:mod:`hpo.models.api`), as a plugin would be.

A conversion is only observed after a click, so a conversion model trained on clicked impressions alone is
trained on a biased sample and sees few positives. ESMM predicts on the entire space instead: one tower gives
pCTR, another pCVR, and the conversion task's output is ``pCTCVR = pCTR x pCVR``, whose label (clicked *and*
converted) is defined on every impression. The towers share the input's embedding, so the sparse conversion
task borrows the click task's representation.

Generalised to K tasks as a chain (as ESM2 does): the binary tasks, in the study's order, are the funnel's
steps; the first predicts its own probability, each later one the product of its own tower's probability and
every earlier step's, so a task's label must be "this step and every earlier one happened". A regression task
is a plain tower on the shared embedding, outside the chain.

The shared embedding is one linear map of the encoded input to ``embed_dim`` values (for a categorical column,
one learnt row per value, summed over the columns): it has no nonlinearity and is an input representation, not a
hidden layer, so the budget counts only the towers: ``tasks x tower_units[j]`` at depth ``j + 1``. The outputs are
logits, ``logit(prod_j sigmoid(z_j))`` computed from log-probabilities (``-softplus(-z)`` summed), so that the
binary cross-entropy of the chained probability stays finite at probabilities near 0 and 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

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
    check_positive,
    check_widths,
    factory_kwargs,
    mlp_blocks,
    register_model,
    tower_outputs,
)

__all__ = ["ESMM", "chain_logits"]

# the chained log-probability is kept at most this far below 0, so that logit(p) = log p - log(1 - p) stays finite
# where the product is 1 to rounding (a float32 probability of 1 - 1e-7 is already 1)
_LOG_P_MAX = -1e-12


def chain_logits(z: Tensor, chained: Sequence[bool]) -> Tensor:
    """``z`` ``(..., K)`` tower logits -> outputs where task ``k`` with ``chained[k]`` is
    ``logit(prod_{j <= k, chained[j]} sigmoid(z_j))`` and every other task is ``z_k`` unchanged."""
    mask = torch.tensor(chained, dtype=torch.bool, device=z.device)
    log_p = torch.cumsum(torch.where(mask, -F.softplus(-z), torch.zeros_like(z)), dim=-1)
    log_p = torch.clamp(log_p, max=_LOG_P_MAX)
    chained_logit = log_p - torch.log(-torch.expm1(log_p))
    return torch.where(mask, chained_logit, z)


@register_model(
    "esmm",
    "ESMM: towers on a shared embedding; each later binary task predicts the product of its own and every earlier "
    "step's probability (pCTCVR = pCTR x pCVR)",
    {
        "embed_dim": "width of the shared embedding of the input (not hidden units: an input representation)",
        "tower_units": "hidden units of each task tower, one entry per layer",
    },
)
class ESMM(MTLModel):
    """ESMM with a K-step chain over the binary tasks. Units per layer: tasks x tower_units[j]."""

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        embed_dim: int = 64,
        tower_units: Sequence[int] = (64, 32),
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        kw = factory_kwargs(device, dtype)
        self.embed_dim = check_positive("embed_dim", embed_dim)
        self.tower_units = check_widths("tower_units", tower_units)
        self.chained = tuple(t.kind == "binary" for t in self.tasks)
        self.input = InputLayer(spec, {"embedding": Part(1, self.embed_dim, hidden=False)}, replicas, **kw)
        self.towers = ParallelMLP(
            replicas, self.n_tasks, self.embed_dim, self.tower_units, output_features=1, **kw
        )

    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        shared = self.input(x)["embedding"].unsqueeze(1)  # (R, 1, B, d): every tower reads the same embedding
        return chain_logits(tower_outputs(self.towers, shared), self.chained)

    def hidden_blocks(self) -> Iterator[Block]:
        yield from mlp_blocks(self.towers, "towers", 1)
