"""The first layer's backward on the CPU, three ways: one ``index_add_`` per categorical column, a sparse CSR product
of the transposed one-hot matrix with the output gradient (the fallback), and the compiled kernel
(``hpo/models/_native.cpp``, the default), across output widths and replica counts, on census-shaped codes (33
columns, 502 categories, batch 1024 per replica; R replicas' codes offset into R stacked vocabularies, as the
vectorised models do, each replica with its own rows). For several replicas the kernel runs as the models call it,
told the replica count so that each thread owns whole replicas; ``columns`` is the same kernel splitting output
columns instead (what every replica count got before). Ratios are each path's time over the kernel's, measured in
the same run; the kernel's result is checked equal bit for bit to the CSR product's at every shape.

    python bench/first_layer.py [--repeats 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import CENSUS_SPEC, census_like

from hpo.models._layers import _csr_of_codes
from hpo.models._native import native_build_error, native_ops

WIDTHS = (16, 64, 144, 256, 512, 1024, 2064)
REPLICAS = (1, 2, 4, 8, 16)


def loop(codes: torch.Tensor, grad: torch.Tensor, rows: int) -> torch.Tensor:
    out = grad.new_zeros(rows, grad.shape[1])
    for j in range(codes.shape[1]):
        out.index_add_(0, codes[:, j], grad)
    return out


def csr(codes: torch.Tensor, grad: torch.Tensor, rows: int) -> torch.Tensor:
    return _csr_of_codes(codes, rows, grad.dtype) @ grad


def native(codes: torch.Tensor, grad: torch.Tensor, rows: int) -> torch.Tensor:
    """As the input layer calls it: told how many replicas' blocks the rows are."""
    out: torch.Tensor = OPS.sum_rows_backward(codes, grad, rows, REPLICAS_NOW)
    return out


def columns(codes: torch.Tensor, grad: torch.Tensor, rows: int) -> torch.Tensor:
    """The same kernel, not told the replicas: threads split the output columns."""
    out: torch.Tensor = OPS.sum_rows_backward(codes, grad, rows)
    return out


REPLICAS_NOW = 1


OPS = native_ops()


def timed(fn, *args, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn(*args)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(*args)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if OPS is None:
        sys.exit(f"the native kernel is unavailable: {native_build_error()}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    vocab = CENSUS_SPEC.vocab_size
    ratios: dict[str, float] = {}
    global REPLICAS_NOW
    for replicas in REPLICAS:
        REPLICAS_NOW = replicas
        feats, _ = census_like(replicas * 1024)  # each replica draws its own batch, as seeds do
        assert feats.cat is not None
        offsets = torch.arange(replicas).repeat_interleave(1024).unsqueeze(1) * vocab
        codes, rows = feats.cat[0] + offsets, replicas * vocab
        for width in WIDTHS if replicas == 1 else (144, 256):
            grad = torch.randn(replicas * 1024, width)
            torch.testing.assert_close(csr(codes, grad, rows), loop(codes, grad, rows), rtol=1e-4, atol=1e-4)
            assert torch.equal(native(codes, grad, rows), csr(codes, grad, rows))
            assert torch.equal(columns(codes, grad, rows), csr(codes, grad, rows))
            t_loop, t_csr, t_col, t_nat = (
                timed(f, codes, grad, rows, repeats=args.repeats) for f in (loop, csr, columns, native)
            )
            ratios[f"{replicas}x{width}"] = {
                "loop": round(t_loop / t_nat, 2), "csr": round(t_csr / t_nat, 2), "columns": round(t_col / t_nat, 2)
            }  # fmt: skip
            print(f"{replicas:>2} replicas, width {width:>5}: index_add_ loop {t_loop * 1e3:7.2f} ms, "
                  f"CSR {t_csr * 1e3:7.2f} ms, kernel by columns {t_col * 1e3:7.2f} ms, kernel {t_nat * 1e3:7.2f} "
                  f"ms; kernel is {t_loop / t_nat:.2f}x the loop, {t_csr / t_nat:.2f}x the CSR product, "
                  f"{t_col / t_nat:.2f}x the column split")  # fmt: skip
    if args.json:
        print(json.dumps({"kernel_speedup_over_by_replicas_x_width": ratios}))


if __name__ == "__main__":
    main()
