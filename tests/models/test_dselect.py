"""DSelect-k against the paper and the authors' code: initialisation, codes, non-power-of-two experts, the
regularisers, static and per-example gates, and convergence to k experts on a toy problem with a known answer."""

from __future__ import annotations

import pytest
import torch

from hpo.errors import ConfigError
from hpo.models import create_model
from hpo.models.moe import binary_codes, dselect_penalty, dselect_selectors, dselect_weights
from tests.models.reference import reference_forward
from tests.models.test_zoo import SPEC, TASKS, features

CONFIG = {"expert_units": (6, 5), "tower_units": (4,), "k": 2, "gamma": 4.0}


def build(n_experts: int, gate: str, entropy_reg: float = 0.0, replicas: int = 1, seeds=(0,)):  # type: ignore[no-untyped-def]
    return create_model(
        "dselect_k",
        SPEC,
        TASKS,
        replicas=replicas,
        seeds=list(seeds),
        dtype=torch.float64,
        n_experts=n_experts,
        gate=gate,
        entropy_reg=entropy_reg,
        **CONFIG,
    )


def test_codes_are_most_significant_bit_first() -> None:
    assert binary_codes(6, 3).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1]]


@pytest.mark.parametrize("gate", ["example", "static"])
@pytest.mark.parametrize("n_experts", [4, 5])
def test_fused_equals_the_paper_reference_forward_and_gradients(gate: str, n_experts: int) -> None:
    model = build(n_experts, gate, replicas=2, seeds=(3, 4))
    x = features(2, 5)
    out, ref = model(x), reference_forward(model, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    params = list(model.parameters())
    proj = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    for a, b in zip(
        torch.autograd.grad((out * proj).sum(), params),
        torch.autograd.grad((ref * proj).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_initialisation_follows_the_authors_code() -> None:
    gamma = 4.0
    model = build(8, "example")
    lo = 0
    for name, part in model.input.parts.items():
        cols = slice(lo, lo + part.size)
        lo += part.size
        if name == "gate_z":
            bound = gamma / 100
        elif name == "gate_w":
            bound = 0.05
        else:
            continue
        for p in (model.input.weight_cont, model.input.weight_cat, model.input.bias):
            block = p[..., cols]
            assert block.abs().max() <= bound and block.abs().max() > bound / 2, name
    static = build(8, "static")
    assert static.z_static.abs().max() <= gamma / 100 and static.w_static.abs().max() <= 0.05
    # every selector logit starts inside the smooth step's cubic region, where its gradient is not zero
    assert (static.z_static.abs() < gamma / 2).all()


def test_non_power_of_two_is_not_renormalised_and_the_reachability_term_pushes_mass_back() -> None:
    z = torch.zeros(1, 1, 3)  # one selector, S = 0.5 on every bit: 1/8 on each of the 8 codes
    w = torch.zeros(1, 1)
    weights = dselect_weights(z, w, n_experts=5, gamma=1.0)
    assert weights.sum().item() == pytest.approx(5 / 8)  # mass on codes 5..7 is lost, as in the authors' code
    sel = dselect_selectors(z, 5, 1.0).unsqueeze(0)  # (R=1, 1, k=1, 5)
    assert dselect_penalty(sel, 0.0, power_of_two=False).item() == pytest.approx(8 / 5 - 1)
    z_all = torch.tensor([[[-5.0, 5.0, -5.0]]])  # code 010 = expert 2, all mass reachable
    sel = dselect_selectors(z_all, 5, 1.0).unsqueeze(0)
    assert dselect_penalty(sel, 0.0, power_of_two=False).item() == pytest.approx(0.0)
    # training the regulariser alone moves every selector onto reachable experts
    model = build(5, "static")
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = features(1, 4)
    model.train()
    for _ in range(300):
        opt.zero_grad()
        model(x)
        penalty = model.regularization()
        assert penalty is not None
        penalty.sum().backward()
        opt.step()
    _, gates = model.forward_with_gates(x)
    for reading in gates.values():
        assert reading.weights.sum(-1).min() > 0.99


def test_entropy_is_zero_for_one_hot_selectors_and_weighted() -> None:
    one_hot = dselect_selectors(torch.tensor([[[-5.0, 5.0, -5.0]]]), 8, 1.0).unsqueeze(0)
    assert dselect_penalty(one_hot, 1.0, power_of_two=True).item() == pytest.approx(0.0, abs=1e-4)
    flat = dselect_selectors(torch.zeros(1, 1, 3), 8, 1.0).unsqueeze(0)
    entropy = -(1 / 8) * torch.log(torch.tensor(1 / 8 + 1e-6)) * 8
    assert dselect_penalty(flat, 0.5, power_of_two=True).item() == pytest.approx(
        0.5 * entropy.item(), rel=1e-5
    )
    model = build(8, "example", entropy_reg=0.0)
    model.train()
    model(features(1, 4))
    assert model.regularization() is None  # power of two and no entropy term: nothing to add


def test_gate_converges_to_exactly_the_k_experts_a_toy_target_needs() -> None:
    """Eight fixed experts; the target is the mean of experts 1 and 6. A static gate with k = 4 selectors and
    the entropy regulariser must end with its weight on experts 1 and 6 only, half each."""
    g = torch.Generator().manual_seed(0)
    experts = torch.randn(8, 256, generator=g)
    target = 0.5 * (experts[1] + experts[6])
    z = (torch.rand(4, 3, generator=g) - 0.5) * 0.02  # the authors' initialisation at gamma = 1
    w = (torch.rand(4, generator=g) - 0.5) * 0.1
    z.requires_grad_(True)
    w.requires_grad_(True)
    opt = torch.optim.Adam([z, w], lr=0.02)
    for _ in range(1500):
        opt.zero_grad()
        weights = dselect_weights(z, w, 8, gamma=1.0)
        fit = (weights @ experts - target).pow(2).mean()
        penalty = dselect_penalty(dselect_selectors(z, 8, 1.0).unsqueeze(0), 1e-3, power_of_two=True)
        (fit + penalty.sum()).backward()
        opt.step()
    final = dselect_weights(z, w, 8, gamma=1.0).detach()
    assert set(torch.nonzero(final > 1e-3).flatten().tolist()) == {1, 6}
    assert final[1].item() == pytest.approx(0.5, abs=0.02) and final[6].item() == pytest.approx(0.5, abs=0.02)
    # every selector ends one-hot: the smooth steps saturated
    assert dselect_selectors(z, 8, 1.0).detach().max(dim=-1).values.min() > 0.999


def test_bad_gate_and_entropy_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"gate must be one of \['example', 'static'\]"):
        build(4, "dense")
    with pytest.raises(ConfigError, match="entropy_reg must be >= 0"):
        build(4, "example", entropy_reg=-1.0)
