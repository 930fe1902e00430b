"""Worker processes for tuning and retraining: started one way, watched one way, ended one way.

Children run ``hpo`` sub-commands in this interpreter. They get the storage URL from their environment
(``HPO_STORAGE``), never from their command line, so a password is not visible in ``ps`` or ``/proc/PID/cmdline``.
A child that fails is reported with its last line of stderr; one killed by a signal is named by the signal.
Children are told how many of them share the machine (``HPO_WORKERS_PER_MACHINE``), so each takes its share of
the cores instead of all of them (:mod:`hpo.cores`).

A child can be started *held* (``hpo worker --held``): it pays its own start-up (the interpreter, PyTorch and the
rest, seconds that a study of cheap trials feels) at once, beside its launcher's, then waits on its stdin for
``go <deadline>`` (:func:`release_workers`) before it touches the storage; end of input (the launcher refused
its input, or died) ends it quietly (:func:`dismiss_workers`). This module imports no PyTorch, so a launcher
starts its children before its own imports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from hpo.cores import BLAS_ENV, WORKERS_ENV, fixed_threads, plan_threads
from hpo.errors import Interrupted

log = logging.getLogger(__name__)

__all__ = [
    "Worker",
    "WorkerExit",
    "dismiss_workers",
    "machine_workers",
    "release_workers",
    "spawn_workers",
    "stop_workers",
    "stopped_line",
    "wait_for_go",
    "watch_workers",
    "worker_args",
]

GO = "go"  # the first word of the line that releases a held child


@dataclass(frozen=True)
class WorkerExit:
    """A worker that did not end cleanly: its index, exit code and what it said last."""

    index: int
    returncode: int
    message: str

    def describe(self) -> str:
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            said = (
                f": {self.message}"
                if self.message and -self.returncode in (signal.SIGINT, signal.SIGTERM)
                else ""
            )
            return (
                f"worker {self.index} was killed by {name}{said}"  # a stopped worker says what it re-queued
            )
        return f"worker {self.index} exited with code {self.returncode}: {self.message or 'no message'}"


@dataclass
class Worker:
    """A child process, its worker index and the file its stderr goes to (a file, not a pipe: a chatty child
    never blocks)."""

    proc: subprocess.Popen[str]
    stderr: IO[str]
    index: int = 0

    def last_line(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().strip().splitlines()
        return lines[-1] if lines else ""


def spawn_workers(
    args_of: Callable[[int], Sequence[str]],
    url: str | None,
    n: int,
    *,
    first: int = 0,
    sharing: int | None = None,
    held: bool = False,
) -> list[Worker]:
    """Start ``n`` children ``hpo <args_of(i)>`` for worker indices ``first .. first + n - 1``, each with the
    storage in its environment only (``None``: the one this process's environment or the default names).
    ``sharing``: how many training processes this launcher puts on the machine (default ``n``; one more when the
    launcher itself is a worker), whose share of the cores each child takes. ``held``: each child reads its go
    from a pipe on its stdin (:func:`release_workers`)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"} | ({"HPO_STORAGE": url} if url is not None else {})
    # the children share this machine's cores (hpo.cores); a launcher that is itself one of several on the
    # machine passes its share on
    env[WORKERS_ENV] = str(machine_workers(n if sharing is None else sharing))
    share = plan_threads(workers=int(env[WORKERS_ENV]), threads=fixed_threads()).threads
    env.update({name: str(share) for name in BLAS_ENV})  # OpenMP and BLAS pools sized right from their start
    out = []
    for i in range(first, first + n):
        err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by watch_workers once the child ends
        cmd = [sys.executable, "-m", "hpo.cli", *args_of(i)]
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.PIPE if held else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            preexec_fn=_die_with_parent,
        )
        log.info("started worker %d (pid %d): hpo %s", i, proc.pid, " ".join(args_of(i)))
        out.append(Worker(proc, err, i))
    return out


def release_workers(workers: Sequence[Worker], deadline: float | None) -> None:
    """Let held children start work, with the run's deadline (UNIX time, or none). A child that died meanwhile
    is left for :func:`watch_workers` to report."""
    for w in workers:
        if w.proc.stdin is None or w.proc.stdin.closed:
            continue
        with contextlib.suppress(OSError):  # BrokenPipeError: it died; its exit code says why
            w.proc.stdin.write(f"{GO} {deadline if deadline is not None else 'none'}\n")
            w.proc.stdin.flush()
        with contextlib.suppress(OSError):
            w.proc.stdin.close()


def dismiss_workers(workers: Sequence[Worker]) -> None:
    """End held children that were never released (their launcher stopped before the work began). They have
    touched nothing (a held child opens the storage only after its go), so each is told to leave twice over: end
    of input, and SIGTERM (one still importing would read its end of input only seconds later); one still there
    after 10 s is killed. Released children are left alone."""
    waiting = [w for w in workers if w.proc.stdin is not None and not w.proc.stdin.closed]
    for w in waiting:
        with contextlib.suppress(OSError):
            w.proc.stdin.close()  # type: ignore[union-attr]
        if w.proc.poll() is None:
            w.proc.terminate()
    for w in waiting:
        try:
            w.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
        w.stderr.close()


def wait_for_go(stream: IO[str]) -> tuple[bool, float | None]:
    """In a held child: block until the launcher's line; ``(False, None)`` at end of input (leave quietly),
    else ``(True, deadline)``."""
    words = stream.readline().split()
    if not words or words[0] != GO:
        return False, None
    return True, (float(words[1]) if len(words) > 1 and words[1] != "none" else None)


def worker_args(study: str, devices: Sequence[str], i: int) -> list[str]:
    """``hpo`` arguments of tuning worker ``i`` of a launcher (``devices`` shared round-robin)."""
    return ["worker", study, "--device", devices[i % len(devices)], "--worker-index", str(i), "--quiet"]


def machine_workers(n: int) -> int:
    """The training processes on this machine when this process puts ``n`` of them there: ``n`` times the share
    that a launcher above it (``HPO_WORKERS_PER_MACHINE``) gave this process."""
    return n * max(1, int(os.environ.get(WORKERS_ENV, "1") or 1))


def _die_with_parent() -> None:
    """In the child, before it runs: ask Linux to send it SIGTERM when its parent dies, however the parent died
    (SIGKILL, OOM killer), so no worker outlives the command that started it. SIGTERM lets it re-queue its trial.
    Elsewhere nothing is done."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def watch_workers(workers: Sequence[Worker], tick: Callable[[], None] | None = None) -> list[WorkerExit]:
    """Wait for every child, calling ``tick`` about once a second; on Ctrl-C or SIGTERM (run under
    ``processes.with_signals``) stop them all (each re-queues its own trial) and raise :class:`Interrupted`. Return
    the children that did not end cleanly."""
    procs = [w.proc for w in workers]
    ticked = 0.0
    try:
        while any(p.poll() is None for p in procs):
            if tick is not None and time.monotonic() - ticked >= 1.0:
                tick()
                ticked = time.monotonic()
            time.sleep(0.1)  # notice the last child's exit at once; the live view is read once a second
    except KeyboardInterrupt:
        raise Interrupted(stopped_line(len(procs), stop_workers(workers), "trial")) from None
    if tick is not None:
        tick()
    out = []
    for w in workers:
        log.info("worker %d (pid %d) exited with code %s", w.index, w.proc.pid, w.proc.returncode)
        if w.proc.returncode not in (0, None):
            out.append(WorkerExit(w.index, int(w.proc.returncode), w.last_line()))
        w.stderr.close()
    return out


def stop_workers(workers: Sequence[Worker]) -> list[str]:
    """SIGTERM every child still running (each re-queues its own trial), wait up to 30 s, then kill what is
    left: nothing outlives its parent. Return a line for each child that did not stop cleanly (ended otherwise
    than by that signal, or said it could not re-queue), so that the parent's one line never claims a re-queue
    that a child's error, seen only in its stderr file, contradicts."""
    procs = [w.proc for w in workers]
    running = [p.poll() is None for p in procs]
    for p, alive in zip(procs, running, strict=True):
        if alive:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=30)
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    unclean = []
    for w, alive in zip(workers, running, strict=True):
        said = w.last_line()
        if alive and (w.proc.returncode != -signal.SIGTERM or "could not be re-queued" in said):
            unclean.append(WorkerExit(w.index, int(w.proc.returncode), said).describe())
    return unclean


def _workers(n: int) -> str:
    return "worker" if n == 1 else "workers"


def stopped_line(workers: int, unclean: Sequence[str], what: str) -> str:
    """The one line an interrupted launcher ends with (:func:`stop_workers`'s findings in it)."""
    if not unclean:
        return (
            f"interrupted: {workers} {_workers(workers)} stopped, each re-queued its {what}; run the same "
            "command again to resume"
        )
    return (
        f"interrupted: {workers} {_workers(workers)} stopped, not all cleanly ({'; '.join(unclean)}); run the same command "
        f"again to resume (a {what} left running is failed by its stale heartbeat and run again)"
    )
