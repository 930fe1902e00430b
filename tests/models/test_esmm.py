"""ESMM: the entire-space chain (pCTCVR = pCTR x pCVR) and its numerics, from the public extension API only."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from hpo.models import InputSpec, TaskSpec, create_model
from hpo.models.esmm import chain_logits
from tests.models.test_zoo import features

ROOT = Path(__file__).resolve().parents[2]
SPEC = InputSpec(n_continuous=3, cardinalities=(4, 2, 5))


def test_the_chain_is_the_product_of_the_steps_probabilities() -> None:
    z = torch.randn(2, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = chain_logits(z, (True, True, False))
    p = torch.sigmoid(z)
    torch.testing.assert_close(torch.sigmoid(out[..., 0]), p[..., 0])
    torch.testing.assert_close(torch.sigmoid(out[..., 1]), p[..., 0] * p[..., 1])  # pCTCVR = pCTR x pCVR
    torch.testing.assert_close(out[..., 2], z[..., 2])  # a regression task is outside the chain
    assert (torch.sigmoid(out[..., 1]) <= torch.sigmoid(out[..., 0])).all()  # conversion never above click


def test_the_chain_stays_finite_where_probabilities_reach_0_and_1() -> None:
    z = torch.tensor([[60.0, 60.0], [-60.0, 5.0], [60.0, -60.0]], requires_grad=True)
    out = chain_logits(z, (True, True))
    assert torch.isfinite(out).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        out, torch.tensor([[1.0, 1.0], [0, 0], [1, 0]])
    )
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_esmm_counts_only_the_towers_against_the_budget() -> None:
    tasks = [TaskSpec("click"), TaskSpec("buy")]
    m = create_model("esmm", SPEC, tasks, embed_dim=512, tower_units=(1024, 8))
    assert [u.units for u in m.layer_units()] == [2048, 16]  # the 512-wide embedding is not a hidden layer
    out = m(features(1, 4, dtype=torch.float32))
    assert out.shape == (1, 4, 2)


def test_esmm_uses_only_the_public_extension_api() -> None:
    tree = ast.parse((ROOT / "hpo" / "models" / "esmm.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.startswith("hpo")} == {"hpo.models.api"}
