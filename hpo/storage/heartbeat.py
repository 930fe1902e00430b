"""Heartbeats for storages that Optuna keeps none on (a gRPC proxy, a journal file).

On SQL databases Optuna's own heartbeat marks a dead worker's trial stale and ``RetryHeartbeatStaleTrialCallback``
re-queues it. On the others a running trial carries ``hpo.heartbeat`` (seconds since the epoch), refreshed by a
thread while it trains; a worker that finds a RUNNING trial whose beat is older than the grace period fails it and
re-queues it with the same callback, so a killed worker's ticket is retried there too. Clocks of different
machines are compared, so the grace period is generous (three intervals and at least 30 s).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import threading
import time
from collections.abc import Iterator

import optuna
import sqlalchemy

from hpo.storage import keys
from hpo.storage.engine import is_rdb
from hpo.storage.optuna_internals import orphaned_heartbeat_stops, study_sql_backend, trial_id

__all__ = [
    "HEARTBEAT_ATTR",
    "beating",
    "fail_dead_workers",
    "fail_stale",
    "fail_unbeaten",
    "stop_orphaned_heartbeats",
    "trial_heartbeat",
]

HEARTBEAT_ATTR = keys.key(keys.HEARTBEAT)
INTERVAL = float(os.environ.get("HPO_HEARTBEAT_SECONDS", "10"))


def grace() -> float:
    return max(3 * INTERVAL, 30.0) if INTERVAL >= 10 else 3 * INTERVAL


@contextlib.contextmanager
def beating(trial: optuna.Trial, interval: float = INTERVAL) -> Iterator[None]:
    """Refresh ``trial``'s heartbeat every ``interval`` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(
                Exception
            ):  # a missed beat is retried; a dead storage ends the trial anyway
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())

    trial.set_user_attr(HEARTBEAT_ATTR, time.time())
    thread = threading.Thread(target=beat, name=f"hpo-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 1)


def fail_stale(study: optuna.Study, max_retry: int = 1) -> list[int]:
    """Fail the RUNNING trials of ``study`` whose heartbeat is older than the grace period and re-queue each
    (same parameters and ticket) as Optuna's retry callback does; return their numbers."""
    now, stale = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        started = t.datetime_start.timestamp() if t.datetime_start else now
        if now - float(t.user_attrs.get(HEARTBEAT_ATTR, started)) > grace():
            stale.append(t.number)
    return _fail_and_requeue(study, stale, max_retry)


def _fail_and_requeue(study: optuna.Study, numbers: list[int], max_retry: int) -> list[int]:
    """Fail trials ``numbers`` and re-queue each (same parameters and ticket) with Optuna's retry callback; return
    those this call failed (another worker may have failed one first)."""
    out = []
    for number in numbers:
        with contextlib.suppress(Exception):
            study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            frozen = study.get_trials(deepcopy=False)[number]
            if frozen.state == optuna.trial.TrialState.FAIL:
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen)
                out.append(number)
    return out


# A RUNNING trial without any heartbeat this long after it started was claimed by a worker that died before its
# first beat. Generous, because ``datetime_start`` is the claiming machine's clock; a live worker beats within
# milliseconds of the claim.
UNBEATEN_GRACE = 60.0


def fail_unbeaten(
    study: optuna.Study, grace_seconds: float = UNBEATEN_GRACE, max_retry: int = 1
) -> list[int]:
    """On a SQL database, fail and re-queue the RUNNING trials that never recorded a heartbeat.

    Optuna's ``fail_stale_trials`` only looks at trials that have a heartbeat row; a worker killed between taking a
    WAITING trial (``study.ask``) and its heartbeat thread's first beat leaves a trial RUNNING for ever, and its
    ticket or retrain chunk would never run (a fault-injection run found one). Returns their numbers.
    """
    backend = study_sql_backend(study)
    if backend is None:
        return []
    now = datetime.datetime.now()
    old = {
        trial_id(t): t.number
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if t.datetime_start is not None and (now - t.datetime_start).total_seconds() > grace_seconds
    }
    if not old:
        return []
    with backend.engine.connect() as conn:
        beaten = {
            row[0]
            for row in conn.execute(
                sqlalchemy.text("SELECT trial_id FROM trial_heartbeats WHERE trial_id IN :ids").bindparams(
                    sqlalchemy.bindparam("ids", expanding=True)
                ),
                {"ids": list(old)},
            )
        }
    unbeaten = [
        number for trial_id, number in old.items() if trial_id not in beaten
    ]  # beaten: Optuna's check
    return _fail_and_requeue(study, unbeaten, max_retry)


def trial_heartbeat(url: str, trial: optuna.Trial) -> contextlib.AbstractContextManager[None]:
    """What keeps ``trial`` alive while it trains on storage ``url``: nothing of ours on a SQL database (Optuna's
    heartbeat thread does it), :func:`beating` elsewhere."""
    return contextlib.nullcontext() if is_rdb(url) else beating(trial)


def fail_dead_workers(url: str, study: optuna.Study) -> None:
    """Fail (and re-queue) the trials of workers that died: Optuna's heartbeat check and :func:`fail_unbeaten` on a
    SQL database, :func:`fail_stale` (hpo's heartbeat attribute) elsewhere."""
    if is_rdb(url):
        optuna.storages.fail_stale_trials(study)
        fail_unbeaten(study)
    else:
        fail_stale(study)


def stop_orphaned_heartbeats() -> None:
    """Stop Optuna heartbeat threads that an interrupt orphaned.

    A signal that lands while Optuna starts a trial's heartbeat thread (inside ``Thread.start``, before the
    ``with`` block that would stop it has begun) leaves that thread running; it is not a daemon, so the
    interpreter would wait for it forever at exit (seen about one time in six when Ctrl-C follows a trial's
    start). Its stop event is the third argument it was started with (Optuna's private heartbeat thread, found
    by :mod:`hpo.storage.optuna_internals`)."""
    for thread, stop in orphaned_heartbeat_stops():
        stop.set()
        thread.join(timeout=5)
