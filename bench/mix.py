"""The gate softmax and mix of one-layer experts on the CPU: the PyTorch form against the compiled kernel.

MMoE and OMoE at the papers' shape (one-layer experts) spend a step's middle on this: each gate's softmax over the
experts, the experts' ReLU and the gate-weighted sum, forward and backward. Two candidates, from the first layer's
whole output ``z = [experts x units | gates x experts]`` to the mixed experts ``(R, G, B, units)`` and back:

* ``pytorch``: the form the models run without the kernel (``gate_softmax``, ``torch.relu``, ``mix_rows``, and the
  split of ``z`` whose backward concatenates the two gradients);
* ``kernel``: ``hpo_native::moe_mix`` and its backward (``hpo/models/_native.cpp``), as the models call it.

Both are checked to agree (float32, to rounding) before timing; each ratio is the PyTorch form's time over the
kernel's, forward plus backward, measured in the same run.

    python bench/mix.py [--repeats 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch

from hpo.models._common import gate_softmax, mix_rows, native_gated_mix
from hpo.models._native import native_build_error, native_ops

# (replicas, experts, units, gates): the paper's MMoE for one seed and for 16 vectorised seeds, OMoE, a wider expert
SHAPES = ((1, 8, 16, 2), (16, 8, 16, 2), (1, 8, 16, 1), (16, 8, 16, 1), (16, 4, 32, 2))
BATCH = 1024


def pytorch(z: torch.Tensor, e: int, h: int, g: int) -> torch.Tensor:
    r, b, _ = z.shape
    experts, logits = z.split([e * h, g * e], dim=-1)
    w = gate_softmax(logits.reshape(r, b, g, e))
    return mix_rows(w, torch.relu(experts).reshape(r, b, e, h))


def kernel(z: torch.Tensor, e: int, h: int, g: int) -> torch.Tensor:
    fused = native_gated_mix(z, e, h, g)
    assert fused is not None
    return fused[0]


def step_time(
    fn: Callable[..., torch.Tensor], z: torch.Tensor, grad: torch.Tensor, dims: tuple[int, ...], repeats: int
) -> float:
    def once() -> None:
        zz = z.detach().requires_grad_()
        fn(zz, *dims).backward(grad)

    once()
    t0 = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if native_ops() is None:
        sys.exit(f"the native kernels are unavailable: {native_build_error()}")
    ratios: dict[str, float] = {}
    print(f"forward + backward, batch {BATCH}, {torch.get_num_threads()} threads")
    for r, e, h, g in SHAPES:
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(r, BATCH, e * h + g * e, generator=gen)
        grad = torch.randn(r, g, BATCH, h, generator=gen)
        torch.testing.assert_close(kernel(z, e, h, g), pytorch(z, e, h, g), rtol=1e-5, atol=1e-6)
        t_py, t_k = (step_time(f, z, grad, (e, h, g), args.repeats) for f in (pytorch, kernel))
        name = f"{r}x{e}x{h}/{g}gates"
        ratios[name] = round(t_py / t_k, 2)
        print(f"{r:>2} replicas, {e} experts x {h} units, {g} gates: PyTorch {t_py * 1e3:6.3f} ms, "
              f"kernel {t_k * 1e3:6.3f} ms, {t_py / t_k:.2f}x")  # fmt: skip
    if args.json:
        print(json.dumps({"kernel_speedup_over_pytorch": ratios}))


if __name__ == "__main__":
    main()
