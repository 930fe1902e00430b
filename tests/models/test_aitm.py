"""AITM: the calibrator's penalty and the budget, from the public extension API only."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from hpo.models import InputSpec, TaskSpec, create_model
from tests.models.test_zoo import features

ROOT = Path(__file__).resolve().parents[2]
SPEC = InputSpec(n_continuous=3, cardinalities=(4, 2, 5))
TASKS = [TaskSpec("click"), TaskSpec("buy")]


def test_the_calibrator_penalises_a_later_step_above_the_earlier_one() -> None:
    m = create_model("aitm", SPEC, TASKS, replicas=2, seeds=[0, 1], dtype=torch.float64, tower_units=(6, 4))
    out = m(features(2, 16))
    p = torch.sigmoid(out)
    want = 0.6 * torch.relu(p[..., 1] - p[..., 0]).mean(dim=1)
    penalty = m.regularization()
    assert penalty is not None and penalty.shape == (2,)
    torch.testing.assert_close(penalty, want)
    none = create_model("aitm", SPEC, TASKS, alpha=0.0)
    none(features(1, 4, dtype=torch.float32))
    assert none.regularization() is None


def test_aitm_budget_counts_towers_and_transfers() -> None:
    m = create_model("aitm", SPEC, [*TASKS, TaskSpec("pay")], embed_dim=300, tower_units=(600, 100))
    assert [u.units for u in m.layer_units()] == [1800, 300, 200]  # towers, towers, two transfer layers


def test_aitm_uses_only_the_public_extension_api() -> None:
    tree = ast.parse((ROOT / "hpo" / "models" / "aitm.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.startswith("hpo")} == {"hpo.models.api"}
