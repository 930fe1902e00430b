"""Run a study: check its inputs, create its studies, queue its tickets (:mod:`hpo.search.tickets`) and start its
workers (:mod:`hpo.search.worker`): one in this process and the others as children (:mod:`hpo.search.processes`),
with the live view."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import optuna

from hpo.config.study import StudySpec
from hpo.data._tabular import TabularDataset
from hpo.search import settle
from hpo.search.launch import Worker, WorkerExit, worker_args
from hpo.search.processes import check_workers_done, with_children, with_signals
from hpo.search.studies import check_inputs, create_studies
from hpo.search.tickets import ensure_tickets
from hpo.search.worker import run_worker
from hpo.storage.engine import normalise_url, open_storage
from hpo.storage.heartbeat import fail_dead_workers
from hpo.storage.locks import claim_lock

log = logging.getLogger(__name__)

__all__ = ["run_study"]


def run_study(
    spec: StudySpec,
    storage_url: str | None = None,
    *,
    n_trials: int | None = None,
    workers: int = 1,
    devices: Sequence[str] = ("auto",),
    quiet: bool = False,
    allow_changed: bool = False,
    held: Sequence[Worker] | None = None,
) -> dict[str, optuna.Study]:
    """Create the studies, queue the tickets, and run ``workers`` workers spread over ``devices``.

    Queuing is idempotent: tickets are queued under the study's lock, only where no live trial holds them, so any
    number of ``hpo run`` processes, together or one after another, leave each ticket queued once. ``held``:
    workers 1.. already started by the caller (:func:`hpo.search.launch.spawn_workers` with ``held``), waiting
    for the go this sends them once the studies and tickets are ready; the caller dismisses them if this
    raises first."""
    url = normalise_url(storage_url)
    ds, tickets = check_inputs(spec, n_trials)  # a bad input never creates or touches a database
    storage = open_storage(url)
    studies = create_studies(spec, storage, ds, allow_changed=allow_changed)
    for arch, study in studies.items():
        count, points = tickets[arch]
        if spec.budget_rule is not None:  # up to the target the convergence rule recorded
            count = settle.resume_target(study, spec.budget_rule)
            tickets[arch] = (count, points)
        if count is not None:
            with claim_lock(url, study.study_name):
                # a trial of a process killed since (a stopped session) still reads RUNNING: failed first, its
                # ticket is queued here again even when its one heartbeat retry is spent, not a run later
                fail_dead_workers(url, study)
                ensure_tickets(study, count, points)
    n = max((c for c, _ in tickets.values() if c is not None), default=None)
    if workers == 0:  # queue only: workers elsewhere (`hpo worker`) take the tickets
        return studies
    deadline = time.time() + 60 * spec.timeout_minutes if spec.timeout_minutes else None
    from hpo.search.progress import StudyProgress

    exits: list[WorkerExit] = []
    with StudyProgress(spec, studies, n, quiet=quiet) as progress:
        if workers <= 1:
            with_signals(
                lambda: run_worker(
                    spec, url, device=devices[0], deadline=deadline, progress=progress, dataset=ds
                )
            )
        else:
            exits = with_signals(
                lambda: _run_processes(spec, url, workers, devices, deadline, progress, ds, held)
            )
    check_workers_done(studies, exits)
    return studies


def _run_processes(
    spec: StudySpec,
    url: str,
    workers: int,
    devices: Sequence[str],
    deadline: float | None,
    progress: Any,
    dataset: TabularDataset,
    held: Sequence[Worker] | None,
) -> list[WorkerExit]:
    """Workers 1.. in child processes, worker 0 in this one: its imports, data and input checks are paid already
    (a child pays them again, seconds that a study of cheap trials feels, and on a small machine they compete
    with the other workers' training), so it starts training while the children start up. The parent's worker
    takes the same share of the cores as each child. On Ctrl-C, SIGTERM or an error in this process, the
    children are stopped (each re-queues its trial)."""

    def args(i: int) -> list[str]:
        return worker_args(spec.source, devices, i) + (
            ["--deadline", str(deadline)] if deadline is not None else []
        )

    return with_children(
        args,
        url,
        workers,
        lambda: run_worker(
            spec, url, device=devices[0], deadline=deadline, progress=_Refreshing(progress), dataset=dataset
        ),
        tick=progress.refresh_from_storage,
        held=held,
        deadline=deadline,
    )


class _Refreshing:
    """The live view while this process is one of several workers: at its own trials' starts, epochs and ends,
    every worker's state is read back from the storage (at most once a second), as the watcher does between."""

    def __init__(self, progress: Any) -> None:
        self.progress, self.last = progress, 0.0

    def _refresh(self, *_: Any) -> None:
        if time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            self.progress.refresh_from_storage()

    trial_started = on_epoch = trial_finished = _refresh
