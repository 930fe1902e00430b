"""Census-shaped synthetic input shared by the benchmarks: the real column counts and cardinalities of UCI
Census-income (7 continuous columns, 33 categorical ones with 502 categories; about 510 one-hot columns)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from hpo.models import Features, InputSpec

CENSUS_CARDINALITIES = (
    9,
    52,
    47,
    17,
    3,
    7,
    24,
    15,
    5,
    9,
    2,
    3,
    6,
    8,
    6,
    6,
    51,
    38,
    8,
    10,
    9,
    10,
    3,
    4,
    5,
    43,
    43,
    43,
    5,
    3,
    3,
    3,
    2,
)
CENSUS_SPEC = InputSpec(n_continuous=7, cardinalities=CENSUS_CARDINALITIES)
CENSUS_ROWS = 199_523


def census_like(n: int, seed: int = 0, spec: InputSpec = CENSUS_SPEC) -> tuple[Features, torch.Tensor]:
    """``n`` rows of census-shaped features (replica axis 1) and two binary labels."""
    g = torch.Generator().manual_seed(seed)
    cont = torch.randn(1, n, spec.n_continuous, generator=g)
    cat = torch.cat(
        [torch.randint(0, c, (1, n, 1), generator=g) + o for c, o in zip(spec.cardinalities, spec.offsets)],
        dim=-1,
    )
    y = (torch.rand(n, 2, generator=g) < torch.tensor([0.06, 0.43])).float()
    return Features(cont, cat), y


def median_rounds(fns: dict[str, Callable[[], float]], rounds: int, warmup: bool = True) -> dict[str, float]:
    """Run every candidate once per round, interleaved (so machine noise hits all alike); median per candidate.

    With ``warmup`` every candidate first runs once untimed: a first call in a process pays one-off costs (the
    allocator growing its heap, oneDNN choosing kernels, lazy imports) that a tuning worker pays once for hundreds
    of trials; measured here, our first census epoch ran at half the speed of the second, so without a warm-up
    the median of two rounds mixed a cold and a warm run.
    """
    if warmup:
        for fn in fns.values():
            fn()
    results: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            results[k].append(fn())
    return {k: float(np.median(v)) for k, v in results.items()}


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
