"""The storage that ``hpo proxy`` serves to workers over Optuna's gRPC proxy.

A worker takes a WAITING trial with ``set_trial_state_values(RUNNING)``, which must say ``False`` to every worker
but one. Optuna's gRPC server answers calls on a pool of ten threads, and its SQL backend makes that call a
read-then-update that only ``SELECT ... FOR UPDATE`` serialises; SQLite has no such lock, so two threads can both
read WAITING and both win. Measured here: six processes popping 200 queued trials through ``hpo proxy`` on SQLite
took 226 trials, 26 of them twice; a retraining chunk taken twice was failed by the second worker's ticket claim
and its seeds were lost. So the proxy runs every state change of a trial one at a time (and, on SQLite, under the
file lock that hpo's direct workers take for their claims), which costs nothing measurable: a state change is one
small transaction, and training, not storage, is what workers spend their time on.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import optuna
from optuna.trial import TrialState

from hpo.errors import StorageError
from hpo.storage.engine import is_rdb, mask_url, open_storage, sqlite_path
from hpo.storage.filelock import file_lock, lock_path

__all__ = ["served_storage"]


def served_storage(url: str, *, create: bool = False) -> optuna.storages.BaseStorage:
    """The storage at ``url`` (a SQL database) with Optuna's in-process cache, its trial state changes serialised.
    A SQLite file that does not exist is refused unless ``create`` (a typo in a path must not serve an empty
    database that workers then fill apart from the real one)."""
    if not is_rdb(url):
        raise StorageError(f"the proxy serves a SQL database; {mask_url(url)} is not one")
    served = optuna.storages.get_storage(open_storage(url, heartbeat=False, create=create))
    change = served.set_trial_state_values
    path = sqlite_path(url)
    lock = threading.Lock()

    def set_trial_state_values(
        trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with lock, file_lock(lock_path(path)) if path is not None else contextlib.nullcontext():
            return change(trial_id, state=state, values=values)

    served.set_trial_state_values = set_trial_state_values  # type: ignore[method-assign]
    return served
