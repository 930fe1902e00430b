"""The cores a process may use and each training process's share of them, without importing PyTorch.

A launcher plans its children's threads before any of them (or it) has imported the trainer, so that children
can start while it is still importing and checking (:mod:`hpo.search.launch`); the trainer's side, which sets
the counts in PyTorch and re-plans them under load, is :mod:`hpo.training.threads`.

* the cores are the CPU affinity, capped by the cgroup's CPU quota (cgroup v2 ``cpu.max`` or v1
  ``cpu.cfs_quota_us``, the limit SLURM and Kubernetes set), not ``os.cpu_count()``;
* divided among the workers one launcher starts on this machine (``HPO_WORKERS_PER_MACHINE``);
* on CUDA, where the CPU only feeds the device, one or two threads;
* ``--threads`` (``HPO_THREADS``) or ``training.threads`` fix the count instead.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BLAS_ENV",
    "CUDA_THREADS",
    "THREADS_ENV",
    "WORKERS_ENV",
    "ThreadPlan",
    "affinity",
    "available_cores",
    "cgroup_quota",
    "fixed_threads",
    "plan_threads",
]

WORKERS_ENV = "HPO_WORKERS_PER_MACHINE"
THREADS_ENV = "HPO_THREADS"
CUDA_THREADS = (
    2  # a CUDA worker's CPU threads: the host side launches kernels and copies, it does not compute
)
BLAS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class ThreadPlan:
    """A process's thread count and where it came from.

    ``cores``: the cores this process may use (affinity and quota); ``workers``: training processes sharing them;
    ``threads``: intra-op threads per process; ``source``: ``planned`` (adapted to the load before each trial) or
    what fixed it (``--threads``, ``training.threads``)."""

    cores: float
    workers: int
    threads: int
    source: str = "planned"

    @property
    def fixed(self) -> bool:
        return self.source != "planned"


def cgroup_quota(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> float | None:
    """The CPU quota of this process's cgroup in cores (the smallest along its path up to the root), or ``None``
    when there is none. Reads cgroup v2 ``cpu.max`` and v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified hierarchy
            quotas += _walk(root / path.lstrip("/"), root, _v2_quota)
        elif "cpu" in controllers.split(","):
            base = next((root / n for n in (controllers, "cpu", "cpu,cpuacct") if (root / n).is_dir()), None)
            if base is not None:
                quotas += _walk(base / path.lstrip("/"), base, _v1_quota)
    return min(quotas) if quotas else None


def _walk(start: Path, top: Path, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas ``read`` finds in ``start`` and each folder above it up to ``top``."""
    out = []
    here = start
    while True:
        q = read(here)
        if q is not None:
            out.append(q)
        if here == top or top not in here.parents:
            return out
        here = here.parent


def _v2_quota(folder: Path) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    return None


def _v1_quota(folder: Path) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    return None


def affinity() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def available_cores() -> float:
    """The cores this process may run on: its CPU affinity, capped by its cgroup's quota."""
    cores = float(len(affinity()))
    quota = cgroup_quota()
    return min(cores, quota) if quota is not None else cores


def plan_threads(
    *,
    workers: int | None = None,
    device: Any = "cpu",
    threads: int | None = None,
    source: str = "--threads",
    cores: float | None = None,
) -> ThreadPlan:
    """The plan for one of ``workers`` training processes on this machine (default: ``HPO_WORKERS_PER_MACHINE``,
    else 1). ``threads`` fixes the count (``source`` says who fixed it); ``cores`` stands in for
    :func:`available_cores` (tests)."""
    have = available_cores() if cores is None else cores
    n = workers if workers is not None else int(os.environ.get(WORKERS_ENV, "1") or 1)
    n = max(1, n)
    if threads is not None:
        return ThreadPlan(have, n, max(1, int(threads)), source)
    share = max(1, math.floor(have / n + 1e-9))
    if str(device).split(":")[0] == "cuda":  # a name or a torch.device
        share = min(share, CUDA_THREADS)
    return ThreadPlan(have, n, share)


def fixed_threads() -> int | None:
    """The count ``--threads`` fixed for this process and its children (``HPO_THREADS``), if any."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value else None
