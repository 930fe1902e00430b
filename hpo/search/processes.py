"""Processes and signals: the first Ctrl-C or SIGTERM stops a command cleanly, a launcher runs worker 0 itself and
the rest as children, and a finished launcher checks that its children left no work undone.

Tuning (:mod:`hpo.search.runner`) and retraining (:mod:`hpo.search.retrain`) share these; the children themselves
are started, watched and stopped by :mod:`hpo.search.launch`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

from hpo.cores import WORKERS_ENV
from hpo.errors import Interrupted, WorkerError
from hpo.search import interrupts
from hpo.search.launch import (
    Worker,
    WorkerExit,
    machine_workers,
    release_workers,
    spawn_workers,
    stop_workers,
    stopped_line,
    watch_workers,
)
from hpo.search.tickets import DONE
from hpo.storage import keys
from hpo.storage.heartbeat import stop_orphaned_heartbeats

__all__ = ["check_workers_done", "tickets_left", "with_children", "with_signals"]

log = logging.getLogger(__name__)


def tickets_left(study: optuna.Study) -> int:
    """Tickets of ``study`` (tuning trials or retraining chunks) that no finished trial holds yet."""
    held = [(keys.plain(t.user_attrs).get(keys.TICKET), t.state) for t in study.get_trials(deepcopy=False)]
    return len({k for k, _ in held if k is not None} - {k for k, s in held if s in DONE})


def check_workers_done(studies: Mapping[str, optuna.Study], exits: Sequence[WorkerExit]) -> None:
    """A worker that died is only an error if work is left: its trial was retried by another worker otherwise."""
    if not exits:
        return
    left = sum(tickets_left(study) for study in studies.values())
    if left:
        raise WorkerError(
            f"{exits[0].describe()}; {left} tickets are not done "
            "(its trial is re-queued): run the same command again to resume"
        )
    for e in exits:
        log.warning("%s; its trial was retried by another worker and every ticket is done", e.describe())


def with_signals(fn: Any) -> Any:
    """Run ``fn`` so that the first SIGINT or SIGTERM stops it cleanly.

    The first signal raises KeyboardInterrupt (Optuna then marks the running trial FAILED instead of leaving it
    RUNNING, and the command ends killed by that signal: ``hpo.cli.entry``); further signals during that clean-up are ignored, so a second Ctrl-C
    cannot cut the clean-up short.
    """
    fired = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        interrupts.request(signum)  # raised again at the next epoch or trial if this raise is swallowed
        raise KeyboardInterrupt

    def unraisable(
        info: Any,
    ) -> None:  # the swallowed raise is raised again later: no "Exception ignored" noise
        if not (info.exc_type is KeyboardInterrupt and interrupts.requested()):
            hook(info)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    interrupts.clear(forget=True)  # an earlier command's signal in this process is not this one's
    try:
        return fn()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sys.unraisablehook = hook
        interrupts.clear()
        if fired:
            stop_orphaned_heartbeats()


def with_children(
    args_of: Callable[[int], Sequence[str]],
    url: str,
    workers: int,
    own: Callable[[], Any],
    tick: Callable[[], None] | None = None,
    *,
    held: Sequence[Worker] | None = None,
    deadline: float | None = None,
) -> list[WorkerExit]:
    """Start workers ``1 .. workers - 1`` as children ``hpo <args_of(i)>`` (or release the ``held`` children
    started earlier for them, with ``deadline``), run worker 0 as ``own()`` in this process with the same share
    of the cores, then wait for the children. On Ctrl-C, SIGTERM or an error here the children are stopped (each
    re-queues its trial or chunk). Tuning and retraining share it."""
    if held is not None:
        children = list(held)
        release_workers(children, deadline)
    else:
        children = spawn_workers(args_of, url, workers - 1, first=1, sharing=workers)
    before = os.environ.get(WORKERS_ENV)
    os.environ[WORKERS_ENV] = str(machine_workers(workers))  # planned like each child's share
    try:
        own()
    except KeyboardInterrupt as exc:
        own_failed = [f"worker 0: {exc}"] if "could not be re-queued" in str(exc) else []
        raise Interrupted(stopped_line(workers, own_failed + stop_workers(children), "work")) from None
    except BaseException:
        stop_workers(children)
        raise
    finally:
        if before is None:
            os.environ.pop(WORKERS_ENV, None)
        else:
            os.environ[WORKERS_ENV] = before
    return watch_workers(children, tick=tick)
