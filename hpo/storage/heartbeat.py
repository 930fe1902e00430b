"""Heartbeats for storages that Optuna keeps none on (a gRPC proxy, a journal file).

On SQL databases Optuna's own heartbeat marks a dead worker's trial stale and ``RetryHeartbeatStaleTrialCallback``
re-queues it. On the others a running trial carries ``hpo.heartbeat`` (seconds since the epoch), refreshed by a
thread while it trains; a worker that finds a RUNNING trial whose beat is older than the grace period fails it and
re-queues it with the same callback, so a killed worker's ticket is retried there too. Clocks of different
machines are compared, so the grace period is generous (three intervals and at least 30 s).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import optuna

__all__ = ["HEARTBEAT_ATTR", "beating", "fail_stale"]

HEARTBEAT_ATTR = "hpo.heartbeat"
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
    now, out = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        started = t.datetime_start.timestamp() if t.datetime_start else now
        if now - float(t.user_attrs.get(HEARTBEAT_ATTR, started)) <= grace():
            continue
        with contextlib.suppress(Exception):  # another worker may have failed it first
            study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            frozen = study.get_trials(deepcopy=False)[t.number]
            if frozen.state == optuna.trial.TrialState.FAIL:
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen)
                out.append(t.number)
    return out
