"""Gate and expert utilisation: how much weight each gate gives each expert on a batch.

The PLE paper analyses exactly this (its expert-utilisation figure), and users of every MTL library ask for it:
a gate that puts all its weight on one expert, or an expert no gate uses, is a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hpo.models._base import MTLModel
from hpo.models._layers import Features

__all__ = ["ExpertUse", "gate_utilisation"]


@dataclass(frozen=True)
class ExpertUse:
    """One expert's weight under one gate, over the examples of a batch (and the replicas)."""

    gate: str
    expert: str
    mean: float
    std: float


@torch.no_grad()
def gate_utilisation(model: MTLModel, x: Features) -> list[ExpertUse]:
    """Mean and standard deviation of each gate's weight on each expert it selects over, on batch ``x``."""
    was_training = model.training
    model.eval()
    try:
        _, gates = model.forward_with_gates(x)
    finally:
        model.train(was_training)
    out = []
    for gname, reading in gates.items():
        w = reading.weights.reshape(-1, reading.weights.shape[-1]).double()
        for i, ename in enumerate(reading.experts):
            out.append(ExpertUse(gname, ename, float(w[:, i].mean()), float(w[:, i].std(unbiased=False))))
    return out
