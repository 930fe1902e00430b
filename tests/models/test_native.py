"""The compiled first-layer backward: equal bit for bit to the CSR product it replaces, whatever the thread count,
safe on bad codes, and a silent-in-results fallback when it cannot be built."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from hpo.models import _layers
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


# widths below, at and above one thread's 64-column minimum, odd ones included; replicas 1 and several
SHAPES = [(1, 7), (1, 64), (1, 144), (4, 130), (3, 2064), (16, 16)]


@pytest.mark.parametrize(("replicas", "width"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_equals_csr_product_bit_for_bit(
    ops: object, replicas: int, width: int, dtype: torch.dtype
) -> None:
    codes, rows = _codes(300, (9, 2, 52, 17, 3), replicas)
    grad = torch.randn(codes.shape[0], width, dtype=dtype, generator=torch.Generator().manual_seed(1))
    got = ops.sum_rows_backward(codes, grad, rows)  # type: ignore[attr-defined]
    want = _csr_of_codes(codes, rows, dtype) @ grad
    assert got.dtype == dtype and got.shape == (rows, width)
    assert torch.equal(got, want)
    loop = torch.zeros(rows, width, dtype=dtype)
    for j in range(codes.shape[1]):
        loop.index_add_(0, codes[:, j], grad)
    # each code belongs to one column (as in the input layer), so the per-column loop adds in the same order too
    assert torch.equal(got, loop)


def test_codes_shared_between_columns_agree_to_rounding(ops: object) -> None:
    """Outside the input layer's layout a code may repeat across columns; the sums then agree to rounding."""
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 5, (200, 4), generator=g)
    grad = torch.randn(200, 70, dtype=torch.float64, generator=g)
    want = torch.zeros(5, 70, dtype=torch.float64).index_add_(
        0, codes.reshape(-1), grad.repeat_interleave(4, 0)
    )
    torch.testing.assert_close(ops.sum_rows_backward(codes, grad, 5), want)  # type: ignore[attr-defined]


def test_kernel_result_does_not_depend_on_the_thread_count(ops: object) -> None:
    codes, rows = _codes(1024, (9, 2, 52, 17, 3, 24), 2)
    grad = torch.randn(codes.shape[0], 777)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(ops.sum_rows_backward(codes, grad, rows))  # type: ignore[attr-defined]
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("bad", [-1, 10])
def test_kernel_rejects_codes_outside_the_weight(ops: object, bad: int) -> None:
    codes = torch.tensor([[0, 3], [bad, 1]])
    with pytest.raises(RuntimeError, match=r"codes must lie in \[0, 10\)"):
        ops.sum_rows_backward(codes, torch.ones(2, 4), 10)  # type: ignore[attr-defined]


def test_kernel_takes_non_contiguous_inputs(ops: object) -> None:
    codes, rows = _codes(50, (4, 6), 1)
    grad = torch.randn(8, codes.shape[0]).t()  # a transposed view
    want = _csr_of_codes(codes, rows, grad.dtype) @ grad.contiguous()
    assert torch.equal(ops.sum_rows_backward(codes.t().contiguous().t(), grad, rows), want)  # type: ignore[attr-defined]


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
