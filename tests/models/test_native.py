"""The compiled first-layer backward: equal bit for bit to the CSR product it replaces, whatever the thread count,
safe on bad codes, and a silent-in-results fallback when it cannot be built."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from hpo.models import TaskSpec, _layers, create_model, gate_utilisation, moe
from hpo.models._common import native_gated_mix
from hpo.models._layers import InputLayer, Part, _csr_of_codes, sum_of_rows_grad
from hpo.models._native import native_build_error, native_ops
from tests.conftest import require
from tests.models.test_zoo import SPEC, features


@pytest.fixture
def ops() -> object:
    got = native_ops()
    if got is None:
        require("HPO_REQUIRE_NATIVE", f"the native kernel is unavailable: {native_build_error()}")
    return got


def _codes(n: int, cards: tuple[int, ...], replicas: int, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Codes of ``replicas`` stacked vocabularies, each replica its own rows, as the vectorised models build."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0, *cards[:-1]]).cumsum(0)
    per = torch.stack([torch.randint(0, c, (replicas * n,), generator=g) for c in cards], dim=1) + offsets
    vocab = sum(cards)
    rep = torch.arange(replicas).repeat_interleave(n).unsqueeze(1) * vocab
    return (per + rep).contiguous(), replicas * vocab


def _column_loop(codes: torch.Tensor, grad: torch.Tensor, rows: int) -> torch.Tensor:
    """The per-column fallback: one ``index_add_`` per categorical column, rows in order. Each code belongs to one
    column, so every element adds its terms in row order, as the kernel does: the bit-for-bit reference. (PyTorch's
    CSR product, the other fallback, sums in an order its sparse library picks per CPU: equal to rounding only.)"""
    out = torch.zeros(rows, grad.shape[1], dtype=grad.dtype)
    for j in range(codes.shape[1]):
        out.index_add_(0, codes[:, j], grad)
    return out


# widths from 7 to the budget's widest, odd ones included; replicas 1 and several (called without the replica count)
SHAPES = [(1, 7), (1, 64), (1, 144), (4, 130), (3, 2064), (16, 16)]


@pytest.mark.parametrize(("replicas", "width"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_equals_the_column_loop_bit_for_bit(
    ops: object, replicas: int, width: int, dtype: torch.dtype
) -> None:
    codes, rows = _codes(300, (9, 2, 52, 17, 3), replicas)
    grad = torch.randn(codes.shape[0], width, dtype=dtype, generator=torch.Generator().manual_seed(1))
    got = ops.sum_rows_backward(codes, grad, rows)  # type: ignore[attr-defined]
    want = _csr_of_codes(codes, rows, dtype) @ grad
    assert got.dtype == dtype and got.shape == (rows, width)
    # each code belongs to one column (as in the input layer), so the per-column loop adds in the same order
    assert torch.equal(got, _column_loop(codes, grad, rows))
    torch.testing.assert_close(got, want)


def test_codes_shared_between_columns_agree_to_rounding(ops: object) -> None:
    """Outside the input layer's layout a code may repeat across columns; the sums then agree to rounding."""
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 5, (200, 4), generator=g)
    grad = torch.randn(200, 70, dtype=torch.float64, generator=g)
    want = torch.zeros(5, 70, dtype=torch.float64).index_add_(
        0, codes.reshape(-1), grad.repeat_interleave(4, 0)
    )
    torch.testing.assert_close(ops.sum_rows_backward(codes, grad, 5), want)  # type: ignore[attr-defined]


def _same_for_every_thread_count(fn: Callable[[], tuple[torch.Tensor, ...]]) -> None:
    """``fn`` run with 1, 2 and 3 threads gives the same tensors bit for bit."""
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(fn())
    finally:
        torch.set_num_threads(before)
    for got in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], got, strict=True))


def test_kernel_result_does_not_depend_on_the_thread_count(ops: object) -> None:
    """Wide enough (9000 columns, past the 4096-column grain) that threads split the columns."""
    codes, rows = _codes(200, (9, 2, 52, 17, 3, 24), 1)
    grad = torch.randn(codes.shape[0], 9000)
    _same_for_every_thread_count(lambda: (ops.sum_rows_backward(codes, grad, rows),))  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [-1, 10])
def test_kernel_rejects_codes_outside_the_weight(ops: object, bad: int) -> None:
    codes = torch.tensor([[0, 3], [bad, 1]])
    with pytest.raises(RuntimeError, match=r"codes must lie in \[0, 10\)"):
        ops.sum_rows_backward(codes, torch.ones(2, 4), 10)  # type: ignore[attr-defined]


def test_kernel_takes_non_contiguous_inputs(ops: object) -> None:
    codes, rows = _codes(50, (4, 6), 1)
    grad = torch.randn(8, codes.shape[0]).t()  # a transposed view
    got = ops.sum_rows_backward(codes.t().contiguous().t(), grad, rows)  # type: ignore[attr-defined]
    assert torch.equal(got, _column_loop(codes, grad.contiguous(), rows))
    torch.testing.assert_close(got, _csr_of_codes(codes, rows, grad.dtype) @ grad.contiguous())


def _layer_grads() -> list[torch.Tensor]:
    layer = InputLayer(
        SPEC, {"a": Part(2, 40), "g": Part(3, 30, hidden=False)}, replicas=3, dtype=torch.float64
    )
    layer.reset_parameters([torch.Generator().manual_seed(s) for s in range(3)])
    out = torch.cat(list(layer(features(3, 64)).values()), dim=-1)
    proj = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(5))
    return list(torch.autograd.grad((out * proj).sum(), list(layer.parameters())))


def test_model_gradients_are_the_same_with_and_without_the_kernel(
    ops: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_kernel = _layer_grads()
    monkeypatch.setattr(_layers, "native_ops", lambda: None)
    fallback = _layer_grads()
    assert all(torch.equal(a, b) for a, b in zip(with_kernel, fallback, strict=True))


def test_cuda_style_loop_is_used_for_other_dtypes() -> None:
    codes, rows = _codes(40, (4, 6), 1)
    grad = torch.randn(codes.shape[0], 8).to(torch.bfloat16)
    got = sum_of_rows_grad(codes, grad, rows)
    want = _csr_of_codes(codes, rows, torch.float32) @ grad.float()
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)


def test_a_failed_build_falls_back_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HPO_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "/bin/false")
    native_ops.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="hpo.models._native"):
            assert native_ops() is None
        assert "exited with 1" in (native_build_error() or "")
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "same results" in caplog.records[0].getMessage()
        assert list(tmp_path.iterdir()) == []  # no half-written library is left for another process to load
    finally:
        monkeypatch.undo()
        native_ops.cache_clear()


def test_the_kernel_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_NATIVE", "0")
    native_ops.cache_clear()
    try:
        assert native_ops() is None
        assert native_build_error() == "disabled by HPO_NATIVE=0"
    finally:
        monkeypatch.undo()
        native_ops.cache_clear()


def test_kernel_has_a_shape_only_form_for_tracing(ops: object) -> None:
    """``torch.compile`` and meta-device builds trace the op through its registered fake kernel, without running it."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        codes = torch.zeros(6, 3, dtype=torch.long)
        grad = torch.empty(6, 5, dtype=torch.float64)
        out = ops.sum_rows_backward(codes, grad, 11)  # type: ignore[attr-defined]
    assert out.shape == (11, 5) and out.dtype == torch.float64


def test_kernel_answers_meta_tensors_by_shape(ops: object) -> None:
    codes = torch.zeros(2, 1, dtype=torch.long, device="meta")
    out = ops.sum_rows_backward(codes, torch.empty(2, 3, device="meta"), 4)  # type: ignore[attr-defined]
    assert out.device.type == "meta" and out.shape == (4, 3)  # the fake kernel answers for meta tensors


# --- the replica split of the first layer's backward --------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "width"), [(2, 7), (3, 144), (16, 16), (4, 600)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_replica_split_equals_the_column_loop_bit_for_bit(
    ops: object, replicas: int, width: int, dtype: torch.dtype
) -> None:
    """Threads own whole replicas when the codes say so; every element still adds its terms in row order."""
    codes, rows = _codes(200, (9, 2, 52, 17, 3), replicas)
    grad = torch.randn(codes.shape[0], width, dtype=dtype, generator=torch.Generator().manual_seed(2))
    got = ops.sum_rows_backward(codes, grad, rows, replicas)  # type: ignore[attr-defined]
    assert torch.equal(got, _column_loop(codes, grad, rows))
    torch.testing.assert_close(got, _csr_of_codes(codes, rows, dtype) @ grad)
    assert torch.equal(got, ops.sum_rows_backward(codes, grad, rows))  # type: ignore[attr-defined]


def test_replica_split_does_not_depend_on_the_thread_count(ops: object) -> None:
    codes, rows = _codes(512, (9, 2, 52, 17, 3, 24), 5)
    grad = torch.randn(codes.shape[0], 144)
    _same_for_every_thread_count(lambda: (ops.sum_rows_backward(codes, grad, rows, 5),))  # type: ignore[attr-defined]


def test_replica_split_refuses_a_code_outside_its_replica(ops: object) -> None:
    codes, rows = _codes(10, (4, 6), 2)
    codes[3, 0] += rows // 2  # replica 0's row pointing into replica 1's block
    with pytest.raises(RuntimeError, match=r"codes of each replica must lie in its own block of 10 rows"):
        ops.sum_rows_backward(codes, torch.ones(codes.shape[0], 3), rows, 2)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="replicas must divide"):
        ops.sum_rows_backward(codes, torch.ones(codes.shape[0], 3), rows, 3)  # type: ignore[attr-defined]


# --- the compiled gate softmax and mix of one-layer experts -------------------------------------------------------


def _mix_reference(z: torch.Tensor, e: int, h: int, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The PyTorch form: softmax of each gate's logits, ReLU of the experts, gate-weighted sum."""
    r, b, _ = z.shape
    w = torch.softmax(z[..., e * h :].reshape(r, b, g, e), dim=-1)
    x = torch.relu(z[..., : e * h]).reshape(r, b, e, h)
    return torch.einsum("rbge,rbeh->rgbh", w, x), w


# the paper's 8 x 16 with two gates; widths that are not a multiple of the 8-lane vector; one expert; one gate
MIX_SHAPES = [(2, 8, 16, 2), (1, 8, 16, 1), (3, 5, 13, 3), (1, 1, 3, 2), (2, 4, 9, 1)]


@pytest.mark.parametrize(("r", "e", "h", "g"), MIX_SHAPES)
def test_mix_equals_the_pytorch_form_forward_and_backward(
    ops: object, r: int, e: int, h: int, g: int
) -> None:
    gen = torch.Generator().manual_seed(r * 100 + e * 10 + h)
    z = (3 * torch.randn(r, 37, e * h + g * e, dtype=torch.float64, generator=gen)).requires_grad_()
    fused = native_gated_mix(z, e, h, g)
    assert fused is not None
    out, w = fused
    ref, w_ref = _mix_reference(z, e, h, g)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(w, w_ref, rtol=1e-12, atol=1e-14)
    proj = torch.randn(out.shape, dtype=out.dtype, generator=gen)
    (got,) = torch.autograd.grad((out * proj).sum(), z)
    (want,) = torch.autograd.grad((ref * proj).sum(), z)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)
    assert torch.autograd.gradcheck(lambda t: native_gated_mix(t, e, h, g)[0], (z,))  # type: ignore[index]


def test_mix_in_float32_agrees_with_pytorch_to_rounding(ops: object) -> None:
    """float32 uses a polynomial exp (Cephes') so that the softmax vectorises: within a few ulp of torch's."""
    z = 4 * torch.randn(4, 256, 8 * 16 + 2 * 8, generator=torch.Generator().manual_seed(7))
    z[0, 0, -8:] = torch.tensor([-200.0, 0.0, 50.0, -50.0, 1e-3, 3.0, -87.5, 88.0])  # far tails of the exp
    out, w = ops.moe_mix(z, 8, 16, 2)  # type: ignore[attr-defined]
    ref, w_ref = _mix_reference(z, 8, 16, 2)
    torch.testing.assert_close(w, w_ref, rtol=2e-6, atol=1e-30)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-6)


def test_mix_does_not_depend_on_the_thread_count(ops: object) -> None:
    z = torch.randn(3, 700, 8 * 16 + 2 * 8, generator=torch.Generator().manual_seed(8))
    go = torch.randn(3, 2, 700, 16, generator=torch.Generator().manual_seed(9))

    def mix() -> tuple[torch.Tensor, ...]:
        out, w = ops.moe_mix(z, 8, 16, 2)  # type: ignore[attr-defined]
        return out, w, ops.moe_mix_backward(z, w, go, 8, 16, 2)  # type: ignore[attr-defined]

    _same_for_every_thread_count(mix)


def test_mix_refuses_a_layout_that_is_not_experts_then_gates(ops: object) -> None:
    with pytest.raises(RuntimeError, match=r"z has 20 columns; experts \* units \+ gates \* experts = 144"):
        ops.moe_mix(torch.zeros(1, 2, 20), 8, 16, 2)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["mmoe", "omoe"])
def test_moe_models_with_and_without_the_compiled_mix_agree(
    ops: object, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paper's one-layer MMoE and OMoE train through the kernel on the CPU; the PyTorch form is the same
    function (to float64 rounding), forward, gradients and gate readings."""
    tasks = (TaskSpec("a"), TaskSpec("b"), TaskSpec("c", "regression"))

    def run() -> tuple[list[torch.Tensor], list[tuple[str, str, float, float]]]:
        model = create_model(
            name, SPEC, tasks, replicas=3, seeds=[1, 2, 3], dtype=torch.float64,
            n_experts=6, expert_units=(10,), tower_units=(4,),
        )  # fmt: skip
        x = features(3, 33)
        out = model(x)
        proj = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(4))
        grads = torch.autograd.grad((out * proj).sum(), list(model.parameters()))
        use = [(u.gate, u.expert, u.mean, u.std) for u in gate_utilisation(model, x)]
        return [out.detach(), *grads], use

    calls: list[int] = []
    real = moe.native_gated_mix
    monkeypatch.setattr(moe, "native_gated_mix", lambda *a: calls.append(1) or real(*a))
    fused, gates_fused = run()
    assert calls, "the compiled mix was not used"
    monkeypatch.setattr(moe, "native_gated_mix", lambda *a: None)
    plain, gates_plain = run()
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert [u[:2] for u in gates_fused] == [u[:2] for u in gates_plain] and gates_fused
    torch.testing.assert_close(
        torch.tensor([u[2:] for u in gates_fused]),
        torch.tensor([u[2:] for u in gates_plain]),
        rtol=1e-9,
        atol=1e-12,
    )


def test_a_compiler_without_openmp_still_builds_the_kernels(tmp_path: Path) -> None:
    """Where ``-fopenmp`` fails (a compiler without OpenMP) the kernels are built for one thread, not dropped.
    In a child process: a library of the same namespace cannot be loaded twice into this one."""
    real = shutil.which("c++") or shutil.which("g++")
    if real is None:
        require("HPO_REQUIRE_NATIVE", "no C++ compiler")
        return
    cxx = tmp_path / "cxx-without-openmp"
    cxx.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && exit 1; done\nexec {real} "$@"\n')
    cxx.chmod(0o755)
    code = (
        "import torch\n"
        "from hpo.models._native import native_ops, native_build_error\n"
        "ops = native_ops()\n"
        "assert ops is not None, native_build_error()\n"
        "codes = torch.tensor([[0, 2], [1, 2]])\n"
        "print(ops.sum_rows_backward(codes, torch.ones(2, 3), 3, 1).sum().item())\n"
    )
    env = {**os.environ, "CXX": str(cxx), "HPO_NATIVE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "12.0"
    assert len(list((tmp_path / "cache").glob("*.so"))) == 1
