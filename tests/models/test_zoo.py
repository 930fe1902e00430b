"""Registry-driven checks over every architecture (timm's pattern: add a model, it is tested for free)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

from hpo.errors import BudgetError, ConfigError
from hpo.models import Features, InputSpec, TaskSpec, create_model, gate_utilisation, list_models
from hpo.models._common import BROADCAST_MIX_MAX_WIDTH, gate_softmax, mix_rows
from hpo.models._layers import InputLayer, Part
from hpo.schema import SparseField
from tests.models.reference import l2_reference, reference_forward

SPEC = InputSpec(n_continuous=3, cardinalities=(4, 2, 5))
TASKS = (TaskSpec("income", "binary"), TaskSpec("marital", "binary"), TaskSpec("age", "regression"))
NAMES = [e.name for e in list_models()]

# small configurations with depth > 1 everywhere, so that every code path (deeper layers, towers) is exercised
DEEP: dict[str, dict[str, Any]] = {
    "single_task": {"hidden_units": (6, 5)},
    "l2_constrained": {"hidden_units": (6, 5), "alpha": 0.3},
    "cross_stitch": {"hidden_units": (6, 5)},
    "shared_bottom": {"bottom_units": (7, 6), "tower_units": (4, 3)},
    "omoe": {"n_experts": 3, "expert_units": (6, 5), "tower_units": (4,)},
    "mmoe": {"n_experts": 3, "expert_units": (6, 5), "tower_units": (4,)},
    "dselect_k": {"n_experts": 5, "expert_units": (6, 5), "tower_units": (4,), "k": 2, "gamma": 4.0},
    "tensor_factorization": {"hidden_units": (6, 5), "r1": 3, "r2": 4, "r3": 2},
    "cgc": {"n_specific": 2, "n_shared": 3, "expert_units": (6, 5), "tower_units": (4,)},
    "ple": {"n_levels": 3, "n_specific": 2, "n_shared": 3, "expert_units": (6, 5), "tower_units": (4,)},
    "adatt": {"n_task_experts": 2, "expert_units": (6, 5, 4), "tower_units": (4,)},
    "esmm": {"embed_dim": 5, "tower_units": (6, 4)},
    "aitm": {"embed_dim": 5, "tower_units": (6, 4), "alpha": 0.6},
}


def features(
    replicas: int, batch: int, seed: int = 0, spec: InputSpec = SPEC, dtype=torch.float64
) -> Features:
    g = torch.Generator().manual_seed(seed)
    cont = torch.randn(replicas, batch, spec.n_continuous, generator=g, dtype=dtype)
    cols = [
        torch.randint(0, c, (replicas, batch, 1), generator=g) + o
        for c, o in zip(spec.cardinalities, spec.offsets)
    ]
    return Features(cont, torch.cat(cols, dim=-1))


def build(name: str, replicas: int = 1, seeds=None, dtype=torch.float64, tasks=TASKS, **kw: Any):
    return create_model(
        name, SPEC, tasks, replicas=replicas, seeds=seeds, dtype=dtype, **{**DEEP[name], **kw}
    )


def test_every_registered_model_has_a_test_config() -> None:
    assert sorted(NAMES) == sorted(DEEP)
    assert len(NAMES) == 13


@pytest.mark.parametrize("name", NAMES)
def test_fused_equals_reference_forward_and_gradients(name: str) -> None:
    model = build(name, replicas=2, seeds=[3, 4])
    x = features(2, 9)
    out = model(x)
    ref = reference_forward(model, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    proj = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    params = [p for p in model.parameters()]
    g_fused = torch.autograd.grad((out * proj).sum(), params, allow_unused=True)
    g_ref = torch.autograd.grad((ref * proj).sum(), params, allow_unused=True)
    for (pname, _), a, b in zip(model.named_parameters(), g_fused, g_ref, strict=True):
        assert a is not None and b is not None, pname
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=f"gradient of {pname}")


@pytest.mark.parametrize("name", ["omoe", "mmoe", "dselect_k"])
@pytest.mark.parametrize("n_experts, width", [(4, 3), (8, 16), (3, 48)])
def test_one_layer_experts_equal_reference_on_both_mix_paths(name: str, n_experts: int, width: int) -> None:
    """The paper's one-layer experts are mixed by broadcasting up to BROADCAST_MIX_MAX_WIDTH units and by a
    batched product above it; both must be the reference's gate-weighted sum, forward and backward."""
    kw = {**DEEP[name], "n_experts": n_experts, "expert_units": (width,)}
    if name == "dselect_k":
        kw["k"] = 2
    model = create_model(name, SPEC, TASKS, replicas=2, seeds=[5, 6], dtype=torch.float64, **kw)
    x = features(2, 9)
    out = model(x)
    ref = reference_forward(model, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    proj = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(2))
    params = list(model.parameters())
    g_fused = torch.autograd.grad((out * proj).sum(), params, allow_unused=True)
    g_ref = torch.autograd.grad((ref * proj).sum(), params, allow_unused=True)
    for (pname, _), a, b in zip(model.named_parameters(), g_fused, g_ref, strict=True):
        assert a is not None and b is not None, pname
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=f"gradient of {pname}")


def test_mix_rows_paths_agree_on_either_side_of_the_threshold() -> None:
    """Both mix paths (gate by gate with a hand-written backward; one batched product) are the einsum, forward and
    backward, for one gate and for several, and when only one input needs a gradient."""
    g = torch.Generator().manual_seed(0)
    for e, h in [(8, 16), (8, 17)]:  # 128 units: broadcast; 136: batched product
        assert (e * h <= BROADCAST_MIX_MAX_WIDTH) == (h == 16)
        for gates in (1, 3):
            w = torch.softmax(torch.randn(2, 5, gates, e, generator=g, dtype=torch.float64), dim=-1)
            x = torch.randn(2, 5, e, h, generator=g, dtype=torch.float64)
            w.requires_grad_(True)
            x.requires_grad_(True)
            ours, ref = mix_rows(w, x), torch.einsum("rbge,rbeh->rgbh", w, x)
            torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
            proj = torch.randn(ref.shape, generator=g, dtype=torch.float64)
            for a, b in zip(
                torch.autograd.grad((ours * proj).sum(), (w, x)),
                torch.autograd.grad((ref * proj).sum(), (w, x)),
                strict=True,
            ):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert torch.autograd.gradcheck(mix_rows, (w, x.detach()))
        assert torch.autograd.gradcheck(mix_rows, (w.detach(), x))


def test_gate_softmax_is_torch_softmax_forward_and_backward() -> None:
    g = torch.Generator().manual_seed(1)
    z = (torch.randn(2, 7, 3, 5, generator=g, dtype=torch.float64) * 30).requires_grad_(
        True
    )  # large logits too
    torch.testing.assert_close(gate_softmax(z), torch.softmax(z, dim=-1), rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(gate_softmax, (z,))
    assert torch.autograd.gradgradcheck(gate_softmax, (z,))


@pytest.mark.parametrize("name", NAMES)
def test_shapes_finite_and_every_parameter_learns(name: str) -> None:
    model = build(name, dtype=torch.float32)
    x = features(1, 16, dtype=torch.float32)
    out = model(x)
    assert out.shape == (1, 16, len(TASKS))
    assert torch.isfinite(out).all()
    loss = out.pow(2).sum() + (model.regularization().sum() if model.regularization() is not None else 0)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: {pname} gets no gradient"


@pytest.mark.parametrize("name", NAMES)
def test_units_of_every_expert_differ_at_init(name: str) -> None:
    """Rules out constant initialisation, which makes every unit (and every expert) identical."""
    model = build(name)
    for pname, p in model.named_parameters():
        if p.dim() >= 3 and "stitch" not in pname and p.shape[-1] > 1:
            flat = p.detach().reshape(-1, p.shape[-1])
            assert flat.std(dim=-1).min() > 0 or flat.shape[0] == 1, pname


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_other_seed_other_model(name: str) -> None:
    x = features(1, 5)
    a, b, c = build(name, seeds=[7]), build(name, seeds=[7]), build(name, seeds=[8])
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", NAMES)
def test_reset_parameters_sets_every_parameter(name: str, sparse: bool) -> None:
    """Parameters are allocated with ``torch.empty``; one that ``reset_parameters`` missed would start from whatever
    memory it found (NaN in one CI run of a test that reset only part of a layer). Poisoned with NaN and reset, the
    model must equal one built fresh with the same seeds, embedding tables included."""
    spec = (
        InputSpec(3, (4, 5), (SparseField("user", 30), SparseField("tags", 12, slots=3))) if sparse else SPEC
    )
    model = create_model(name, spec, TASKS, replicas=2, seeds=[3, 4], dtype=torch.float64, **DEEP[name])
    fresh = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert not sparse or any("table" in n for n in fresh)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.reset_parameters([3, 4])
    for n, p in model.named_parameters():
        assert torch.equal(p, fresh[n]), n


@pytest.mark.parametrize("name", NAMES)
def test_replica_equals_lone_model_with_its_seed(name: str) -> None:
    x = features(1, 6)
    many = build(name, replicas=3, seeds=[11, 12, 13])
    out = many(x)
    for r, s in enumerate([11, 12, 13]):
        torch.testing.assert_close(out[r], build(name, seeds=[s])(x)[0], rtol=1e-12, atol=1e-12)
    many.select_replicas([2, 0])
    torch.testing.assert_close(many(x)[0], out[2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(many(x)[1], out[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str) -> None:
    x = features(1, 5)
    a, b = build(name, seeds=[1]), build(name, seeds=[2])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", NAMES)
def test_any_number_of_tasks(name: str) -> None:
    for k in (1, 2, 4):
        tasks = [TaskSpec(f"t{i}", "binary" if i % 2 else "regression") for i in range(k)]
        kw = {"r3": min(2, k)} if name == "tensor_factorization" else {}
        model = build(name, tasks=tasks, **kw)
        assert model(features(1, 4)).shape == (1, 4, k)


@pytest.mark.parametrize("name", NAMES)
def test_dense_only_input(name: str) -> None:
    spec = InputSpec(n_continuous=10)
    model = create_model(name, spec, TASKS, **DEEP[name])
    x = Features(torch.randn(1, 8, 10), None)
    assert model(x).shape == (1, 8, 3)


@pytest.mark.parametrize("name", NAMES)
def test_gates_select_over_every_expert_with_the_right_width(name: str) -> None:
    model = build(name)
    _, gates = model.forward_with_gates(features(1, 7))
    if name in (
        "single_task",
        "l2_constrained",
        "cross_stitch",
        "shared_bottom",
        "tensor_factorization",
        "esmm",
    ):
        assert gates == {}
        return
    assert gates
    used: set[str] = set()
    for gname, reading in gates.items():
        assert reading.weights.shape == (1, 7, len(reading.experts)), gname
        if name == "dselect_k" and model.n_experts & (model.n_experts - 1):
            # DSelect-k with a non-power-of-two expert count does not renormalise (the authors' code): mass on
            # unreachable codes is lost until the reachability regulariser moves it back
            assert (reading.weights.sum(-1) <= 1 + 1e-12).all() and (reading.weights.sum(-1) > 0).all()
        else:
            torch.testing.assert_close(reading.weights.sum(-1), torch.ones(1, 7, dtype=torch.float64))
        used |= set(reading.experts)
    if name == "aitm":  # each later step weighs its own representation against what the previous one passes
        assert set(gates) == {f"transfer:{t.name}" for t in TASKS[1:]}
        assert [r.experts for r in gates.values()] == [("own", TASKS[k].name) for k in range(len(TASKS) - 1)]
        return
    if name == "adatt":  # every task's fusion unit, at every level, mixes all tasks' experts
        everyone = tuple(f"{t.name}.expert{j}" for t in TASKS for j in range(model.m))
        assert set(gates) == {f"level{lv}:{t.name}" for lv in range(len(model.expert_units)) for t in TASKS}
        assert all(reading.experts == everyone for reading in gates.values())
        return
    if name in ("mmoe", "omoe", "dselect_k"):
        assert used == {f"expert{i}" for i in range(model.n_experts)}
        assert len(gates) == (1 if name == "omoe" else len(TASKS))
    else:  # cgc / ple: task k's gate selects its own experts plus the shared ones
        ms, msh = model.n_specific, model.n_shared
        for li in range(model.n_levels):
            for t in TASKS:
                sel = gates[f"level{li}.gate:{t.name}"].experts
                assert sel == tuple(f"{t.name}.expert{i}" for i in range(ms)) + tuple(
                    f"shared.expert{i}" for i in range(msh)
                )
            shared = gates.get(f"level{li}.gate:shared")
            if li < model.n_levels - 1:
                assert shared is not None and len(shared.experts) == len(TASKS) * ms + msh
            else:
                assert shared is None
        assert len(used) == len(TASKS) * ms + msh


def test_cgc_task_experts_reach_only_their_own_task() -> None:
    """Rules out the expert-wiring slip: task k's specific experts must not influence any other task."""
    model = build("cgc")
    x = features(1, 8)
    out = model(x)
    level = model.levels[0]
    w = level.input.weight_cat  # first-layer weights of every expert, gates after them
    ms, h0 = model.n_specific, model.expert_units[0]
    for k in range(len(TASKS)):
        g = torch.autograd.grad(out[..., :].sum(dim=(0, 1))[k], w, retain_graph=True)[0]
        for j in range(len(TASKS)):
            cols = slice(j * ms * h0, (j + 1) * ms * h0)
            touched = g[..., cols].abs().sum() > 0
            assert touched == (j == k), f"task {k} output depends on task {j}'s experts: {touched}"
        shared = slice(len(TASKS) * ms * h0, (len(TASKS) * ms + model.n_shared) * h0)
        assert g[..., shared].abs().sum() > 0


def test_ple_shared_experts_use_the_shared_count() -> None:
    model = build("ple", n_specific=1, n_shared=4)
    for level in model.levels:
        assert level.n_experts == len(TASKS) * 1 + 4
        assert (level.stream_of_expert == len(TASKS)).sum() == 4


def test_sum_of_rows_equals_one_hot_product() -> None:
    layer = InputLayer(
        SPEC, {"a": Part(2, 3), "g": Part(1, 4, hidden=False)}, replicas=2, dtype=torch.float64
    )
    layer.reset_parameters([torch.Generator().manual_seed(s) for s in (0, 1)])
    x = features(2, 11)
    got = torch.cat(list(layer(x).values()), dim=-1)
    want = torch.bmm(x.one_hot(SPEC, torch.float64), layer.dense_weight()) + layer.bias.unsqueeze(1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    proj = torch.randn_like(got)
    ga = torch.autograd.grad((got * proj).sum(), list(layer.parameters()))
    gb = torch.autograd.grad((want * proj).sum(), list(layer.parameters()))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_l2_penalty_matches_pairwise_definition() -> None:
    model = build("l2_constrained", replicas=2, seeds=[0, 1])
    torch.testing.assert_close(model.regularization(), l2_reference(model), rtol=1e-10, atol=1e-12)


def test_paper_mmoe_budget_accounting() -> None:
    """The MMoE paper's synthetic model: 8 experts x 16 units and towers of 8 on d = 100."""
    tasks = [TaskSpec("y1", "regression"), TaskSpec("y2", "regression")]
    m = create_model("mmoe", InputSpec(100), tasks, n_experts=8, expert_units=(16,), tower_units=(8,))
    assert [(u.depth, u.units) for u in m.layer_units()] == [(1, 128), (2, 16)]
    expert_w = m.input.weight_cont[..., : 8 * 16].numel()
    tower_w = m.towers.hidden[0].weight.numel()
    assert expert_w + tower_w == 100 * 16 * 8 + 16 * 8 * 2 == 13056
    sb = create_model("shared_bottom", InputSpec(100), tasks, bottom_units=(113,), tower_units=(8,))
    sb_w = sb.input.weight_cont.numel() + sb.towers.hidden[0].weight.numel()
    assert abs(sb_w - 13056) / 13056 < 0.01
    # full count: experts (12800 + 128 biases) + gates (2 x (100 x 8 + 8)) + towers (2 x (16x8+8 + 8+1))
    assert m.parameter_count() == 12800 + 128 + 2 * 808 + 2 * (136 + 9)


@pytest.mark.parametrize(
    ("name", "kw", "depth", "units"),
    [
        ("mmoe", {"n_experts": 8, "expert_units": (256,)}, 1, 2048),
        (
            "ple",
            {"n_levels": 2, "n_specific": 4, "n_shared": 4, "expert_units": (128,)},
            3,
            3 * 4 * 128 + 4 * 128,
        ),
        ("single_task", {"hidden_units": (683,)}, 1, 3 * 683),
    ],
)
def test_budget_boundary(name: str, kw: dict[str, Any], depth: int, units: int) -> None:
    if units <= 2048:
        m = create_model(name, SPEC, TASKS, **kw)
        assert max(u.units for u in m.layer_units()) == units
    else:
        with pytest.raises(
            BudgetError, match=rf"hidden layer 1 has {units} units .* over the budget of 2048"
        ):
            create_model(name, SPEC, TASKS, **kw)


def test_over_budget_error_names_layer_and_numbers() -> None:
    with pytest.raises(BudgetError) as err:
        create_model("mmoe", SPEC, TASKS, n_experts=9, expert_units=(256, 16))
    assert str(err.value) == (
        "mmoe: hidden layer 1 has 2304 units (experts 9x256), over the budget of 2048 units per layer"
    )
    with pytest.raises(BudgetError, match="hidden layer 3 has 2100 units"):
        create_model("shared_bottom", SPEC, TASKS, bottom_units=(8, 8), tower_units=(700,))


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("mmoe", {"n_experts": 0}, "n_experts must be a positive integer"),
        ("mmoe", {"expert_units": ()}, "expert_units needs at least one layer"),
        ("dselect_k", {"n_experts": 4, "k": 5}, r"k \(5\) must not exceed n_experts \(4\)"),
        ("mmoe", {"n_expert": 3}, r"unknown parameter\(s\) \['n_expert'\]"),
        ("l2_constrained", {"alpha": -1.0}, "alpha must be >= 0"),
    ],
)
def test_bad_hyperparameters_are_refused_clearly(name: str, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_model(name, SPEC, TASKS, **kw)


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model 'mmo'; known models: .*mmoe"):
        create_model("mmo", SPEC, TASKS)


def test_gate_utilisation_reports_every_gate_and_expert() -> None:
    model = build("ple")
    use = gate_utilisation(model, features(1, 50))
    by_gate: dict[str, float] = {}
    for u in use:
        assert 0 <= u.mean <= 1 and u.std >= 0
        by_gate[u.gate] = by_gate.get(u.gate, 0.0) + u.mean
    assert len(by_gate) == 3 * len(TASKS) + 2
    for total in by_gate.values():
        assert total == pytest.approx(1.0)


def test_dselect_k_weights_are_sparse_when_codes_saturate() -> None:
    from hpo.models.moe import dselect_weights

    z = torch.tensor([[[5.0, -5.0, 5.0]]])  # one selector, code 0b101 = expert 5
    w = torch.zeros(1, 1)
    got = dselect_weights(z, w, n_experts=8, gamma=1.0)
    assert got[0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    both = dselect_weights(torch.tensor([[[5.0, -5.0, 5.0], [-5.0, 5.0, -5.0]]]), torch.zeros(1, 2), 8, 1.0)
    assert both[0, 5] == pytest.approx(0.5) and both[0, 2] == pytest.approx(0.5)
