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
from collections.abc import Iterator

import optuna

from hpo.errors import StorageError
from hpo.storage.engine import is_rdb, mask_url, open_storage, sqlite_path
from hpo.storage.filelock import file_lock, lock_path
from hpo.storage.optuna_internals import serialise_state_changes

__all__ = ["served_storage"]


def served_storage(url: str, *, create: bool = False) -> optuna.storages.BaseStorage:
    """The storage at ``url`` (a SQL database) with Optuna's in-process cache, its trial state changes serialised.
    A SQLite file that does not exist is refused unless ``create`` (a typo in a path must not serve an empty
    database that workers then fill apart from the real one)."""
    if not is_rdb(url):
        raise StorageError(f"the proxy serves a SQL database; {mask_url(url)} is not one")
    served = optuna.storages.get_storage(open_storage(url, heartbeat=False, create=create))
    path = sqlite_path(url)
    lock = threading.Lock()

    @contextlib.contextmanager
    def one_at_a_time() -> Iterator[None]:
        with lock, file_lock(lock_path(path)) if path is not None else contextlib.nullcontext():
            yield

    serialise_state_changes(served, one_at_a_time)
    return served
