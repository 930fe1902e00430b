"""How many CPU threads a training process uses: planned from the cores it really has, shared among its neighbours.

PyTorch, its OpenMP pool (which the compiled first-layer kernel shares) and the BLAS under numpy each default to
every core of the machine. N workers on one machine then run N x cores threads, and a parallel region whose
threads wait at a barrier for a thread that is descheduled collapses: a paper-size epoch beside one busy core ran
several times slower with every core's thread than with one, and `studies/demo.yaml` with 2 workers ran slower
than with one (figures in bench/PROFILE.md, "Threads").

So a process that trains plans its threads once (:func:`install`; the plan itself is :mod:`hpo.cores`, which a
launcher reads without importing PyTorch):

* the cores it may use are its CPU affinity, capped by its cgroup's CPU quota (cgroup v2 ``cpu.max`` or v1
  ``cpu.cfs_quota_us``, the limit SLURM and Kubernetes set), not ``os.cpu_count()``;
* divided among the workers one launcher starts on this machine (``HPO_WORKERS_PER_MACHINE``, set by
  :mod:`hpo.search.launch` for its children);
* on CUDA, where the CPU only feeds the device, one or two threads;
* ``--threads`` (``HPO_THREADS``) or ``training.threads`` fix the count instead.

Before each trial or seed chunk :func:`for_trial` re-plans a planned count down to the cores that other processes
leave free right now (read from ``/proc/stat`` over the time since the last look, at least a tenth of a second and
at most once every five seconds; the first look reads from when the plan was installed), so a worker beside a
busy neighbour runs on the core it can have instead of fighting for the one it cannot. A fixed
count is never changed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import torch

from hpo.cores import BLAS_ENV, ThreadPlan, affinity, available_cores, fixed_threads, plan_threads

__all__ = [
    "current_plan",
    "for_trial",
    "free_cores",
    "install",
    "install_for",
    "load_ticks",
    "plan_threads",
]

SAMPLE_SECONDS = 0.1  # how long for_trial watches the other processes' load before a trial
REPLAN_SECONDS = 5.0  # trials starting sooner than this after the last look reuse its count


_PLAN: ThreadPlan | None = None


def install(plan: ThreadPlan) -> ThreadPlan:
    """Make ``plan`` this process's: PyTorch's intra-op threads (which the compiled kernels' OpenMP regions
    follow), one inter-op thread (a worker runs one model at a time), the BLAS pools under numpy, and the
    environment any child inherits."""
    global _PLAN, _LAST, _DUE
    _PLAN, _DUE = plan, True
    # the load watch starts now: the first trial's re-plan reads the load since here and waits only for what is
    # left of SAMPLE_SECONDS (a worker's data and studies usually take longer than that to get ready)
    _LAST = (time.monotonic(), plan.threads, load_ticks())
    _set(plan.threads)
    with contextlib.suppress(RuntimeError):  # only allowed before the first inter-op work in the process
        torch.set_num_interop_threads(1)
    for name in BLAS_ENV:
        os.environ[name] = str(plan.threads)
    return plan


def install_for(device: str | torch.device) -> ThreadPlan:
    """Plan and install this worker's threads for ``device``: ``HPO_THREADS`` (``--threads``) fixes the count,
    else the cores are shared among ``HPO_WORKERS_PER_MACHINE`` workers."""
    return install(plan_threads(device=device, threads=fixed_threads()))


def current_plan() -> ThreadPlan | None:
    """The plan :func:`install` made, if any."""
    return _PLAN


_BLAS: tuple[int, int] | None = None  # (count, loaded modules) when the BLAS pools were last limited


def _set(n: int) -> None:
    """PyTorch's intra-op threads and the BLAS pools to ``n``. Limiting the BLAS pools scans every loaded library
    (milliseconds, a visible share of a 0.1-second trial), so it is done again only when the count changed or
    modules were imported since (a library loaded later, e.g. by the first GP fit, then gets the limit too)."""
    global _BLAS
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if (n, len(sys.modules)) == _BLAS:
        return
    with contextlib.suppress(Exception):  # BLAS pools are optional; numpy's default is harmless if absent
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n, user_api="blas")
    _BLAS = (n, len(sys.modules))


def for_trial(fixed: int | None = None) -> int:
    """Set and return the thread count for the next trial (or seed chunk).

    ``fixed`` (``training.threads``) wins over a planned count; a plan from ``--threads`` wins over both. A
    planned count of more than one thread is lowered to the cores other processes leave free now, so a contended
    worker does not time-slice its own threads against a neighbour at every barrier. Without an installed plan
    (the trainer used as a library) nothing is changed unless ``fixed`` is given."""
    plan = _PLAN
    if plan is not None and plan.fixed:
        n = plan.threads
    elif fixed is not None:
        n = fixed
    elif plan is None:
        return torch.get_num_threads()
    elif plan.threads > 1:
        n = _replanned(plan.threads)
    else:
        n = 1
    _set(n)
    return n


_LAST: tuple[float, int, Ticks | None] | None = None  # (when, threads planned, the load counters read then)
_DUE = False  # installed and not re-planned since: the next trial re-plans, from the counters install read


def _replanned(planned: int) -> int:
    """``planned`` lowered to the free cores, looked at no more than once every ``REPLAN_SECONDS``: a study of
    cheap trials (a fraction of a second each) would otherwise spend a sizeable share of its time watching the
    load. Each look reads the load over the whole time since the counters were last read (at :func:`install` for
    the first), waiting only if that is shorter than ``SAMPLE_SECONDS``."""
    global _LAST, _DUE
    now = time.monotonic()
    if _DUE or _LAST is None or now - _LAST[0] >= REPLAN_SECONDS:
        since = _LAST[2] if _LAST is not None else None
        if since is not None and _LAST is not None and now - _LAST[0] < SAMPLE_SECONDS:
            time.sleep(SAMPLE_SECONDS - (now - _LAST[0]))  # too short a window to read the load from
        free = free_cores(since=since)  # waits SAMPLE_SECONDS only without earlier counters
        _LAST, _DUE = (time.monotonic(), max(1, min(planned, round(free))), load_ticks()), False
    return min(planned, _LAST[1])


def _cpu_ticks(cpus: set[int]) -> tuple[int, int]:
    """(busy, total) jiffies summed over ``cpus`` from ``/proc/stat``."""
    busy = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        head, _, rest = line.partition(" ")
        if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) in cpus:
            v = [int(x) for x in rest.split()]
            idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
            busy += sum(v[:8]) - idle  # guest time is already inside user
            total += sum(v[:8])
    return busy, total


def _own_ticks() -> int:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime of every thread of this process


Ticks = tuple[int, int, int]  # (busy, total) jiffies of this process's cores, and this process's own


def load_ticks() -> Ticks | None:
    """The load counters :func:`free_cores` compares; ``None`` where ``/proc`` cannot be read."""
    try:
        return (*_cpu_ticks(affinity()), _own_ticks())
    except (OSError, ValueError, IndexError):
        return None


def free_cores(seconds: float = SAMPLE_SECONDS, since: Ticks | None = None) -> float:
    """Cores of this process's affinity that other processes left idle (capped by the cgroup quota): over the
    last ``seconds``, or from ``since`` (counters :func:`load_ticks` read earlier) to now without waiting; all of
    them where ``/proc`` cannot be read."""
    cpus = affinity()
    limit = available_cores()
    start = since
    if start is None:
        start = load_ticks()
        time.sleep(seconds)
    end = load_ticks()
    if start is None or end is None or end[1] <= start[1]:
        return limit
    others = max(0, (end[0] - start[0]) - (end[2] - start[2])) / (end[1] - start[1]) * len(cpus)
    return max(0.0, min(limit, len(cpus) - others))
