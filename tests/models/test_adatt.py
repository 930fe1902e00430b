"""AdaTT-sp (Li et al., KDD 2023): the fused model against the authors' loop structure, its budget accounting, and
that it is built from the public extension API alone (the proof that a plugin can be as fast as a built-in)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from hpo.models import TaskSpec, create_model
from tests.models.reference import reference_forward
from tests.models.test_zoo import SPEC, TASKS, features

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "kw",
    [
        {"n_task_experts": 1, "expert_units": (6, 5), "residual": True},
        {"n_task_experts": 3, "expert_units": (6,), "residual": False},
        {"n_task_experts": 2, "expert_units": (7, 6, 5), "residual": True, "tower_units": ()},
    ],
)
def test_fused_equals_the_authors_loops_forward_and_gradients(kw: dict) -> None:
    model = create_model("adatt", SPEC, TASKS, replicas=2, seeds=[5, 6], dtype=torch.float64, **kw)
    x = features(2, 8)
    out, ref = model(x), reference_forward(model, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    proj = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(0))
    params = list(model.parameters())
    for a, b in zip(
        torch.autograd.grad((out * proj).sum(), params),
        torch.autograd.grad((ref * proj).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_units_per_layer_follow_the_budget_rule() -> None:
    m = create_model("adatt", SPEC, TASKS, n_task_experts=2, expert_units=(16, 8), tower_units=(4,))
    assert [layer.units for layer in m.layer_units()] == [3 * 2 * 16, 3 * 2 * 8, 3 * 4]
    with pytest.raises(Exception, match=r"adatt: hidden layer 1 has 2112 units \(experts 6x352\)"):
        create_model("adatt", SPEC, TASKS, n_task_experts=2, expert_units=(352,))


def test_residual_weights_start_as_the_authors_code_draws_them() -> None:
    m = create_model("adatt", SPEC, [TaskSpec("a"), TaskSpec("b")], n_task_experts=4, expert_units=(8, 8))
    w = m.self_weights.detach()
    assert w.shape == (1, 2, 2, 4)  # replicas, levels, tasks, own experts
    bound = math.sqrt(1 / 4)
    assert w.abs().max() <= bound and w.abs().max() > bound / 2
    assert create_model("adatt", SPEC, TASKS, n_task_experts=1).self_weights is None  # m = 1: unit weights


def test_adatt_uses_only_the_public_extension_api() -> None:
    tree = ast.parse((ROOT / "hpo" / "models" / "adatt.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    hpo_imports = {m for m in modules if m and m.startswith("hpo")}
    assert hpo_imports == {"hpo.models.api"}
