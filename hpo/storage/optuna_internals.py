"""Everything hpo takes from Optuna's private code, in one module: an Optuna upgrade that moves any of it breaks
here, and ``tests/storage/test_optuna_internals.py`` says which piece moved.

Why each is needed (Optuna 4-5 has no public equivalent):

* the SQL storage under the cache wrapper a study holds (``study._storage._backend``), to write a trial's
  attributes in one transaction and to find trials that never beat;
* a trial's database id (``_trial_id``), which those statements key on;
* the trial's cached copy (``_cached_frozen_trial``), kept equal to what was written, as ``set_user_attr`` does;
* ``RDBStorage``'s per-attribute and per-value writers, its scoped session, its running-trial check and its
  user-attribute table, so a group of attributes is written in one transaction (one SQLite sync instead of
  twenty) with Optuna's own statements, or on SQLite and PostgreSQL as one multi-row upsert of the same rows;
* a trial's ``storage`` attribute, which ``Trial._suggest`` writes each parameter through, so the parameters a
  search space suggests are kept back and written with the proposal's attributes in one transaction (Optuna's
  own ``_set_trial_param_without_commit``, with its distribution-compatibility check);
* the heartbeat thread's target (``HeartbeatThread._record_heartbeat``), to stop a heartbeat an interrupt orphaned;
* that Optuna's gRPC server changes a trial's state through the served storage's ``set_trial_state_values``, so
  wrapping that one method serialises every state change the proxy makes (:mod:`hpo.storage.proxy`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = [
    "cached_trial",
    "deferred_params",
    "orphaned_heartbeat_stops",
    "serialise_state_changes",
    "sql_backend",
    "study_sql_backend",
    "trial_id",
    "write_trial_in_one_transaction",
]


def sql_backend(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage | None:
    """The SQL storage under Optuna's cache wrapper, if ``storage`` is one and has the writers hpo relies on."""
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, optuna.storages.RDBStorage) and hasattr(backend, "_set_trial_attr_without_commit"):
        return backend
    return None


def study_sql_backend(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """:func:`sql_backend` of the storage a study was loaded with."""
    return sql_backend(study._storage)


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The trial's id in the database (unique across studies; ``number`` is unique within one)."""
    return int(trial._trial_id)


def cached_trial(trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    """The trial's cached copy, which ``trial.params``, ``user_attrs`` and ``report`` read and update."""
    frozen: optuna.trial.FrozenTrial = trial._cached_frozen_trial
    return frozen


Param = tuple[str, float, optuna.distributions.BaseDistribution]  # name, internal value, distribution


class _ParamsKeptBack:
    """A trial's storage with ``set_trial_param`` kept in a list; every other call goes to the storage."""

    def __init__(self, storage: optuna.storages.BaseStorage, kept: list[Param]) -> None:
        self._storage = storage
        self._kept = kept

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def set_trial_param(
        self, trial_id: int, name: str, internal: float, distribution: optuna.distributions.BaseDistribution
    ) -> None:
        self._kept.append((name, internal, distribution))


@contextlib.contextmanager
def deferred_params(trial: optuna.Trial) -> Iterator[list[Param]]:
    """Inside the block, the parameters ``trial`` suggests are sampled as always (the trial's own copy holds
    them) but not written: they collect in the yielded list, for :func:`write_trial_in_one_transaction`. On a
    storage without SQL (a gRPC proxy, a journal, memory) nothing is kept back and the list stays empty."""
    kept: list[Param] = []
    if sql_backend(trial.storage) is None:
        yield kept
        return
    storage = trial.storage
    trial.storage = _ParamsKeptBack(storage, kept)  # type: ignore[assignment]
    try:
        yield kept
    finally:
        trial.storage = storage


def write_trial_in_one_transaction(
    rdb: optuna.storages.RDBStorage,
    trial: optuna.Trial,
    values: Mapping[int, float],
    attrs: Mapping[str, Any],
    params: Sequence[Param] = (),
) -> None:
    """Parameters kept back by :func:`deferred_params`, intermediate ``values`` (step -> value, none reported
    before) and user ``attrs`` of a running trial, with Optuna's own statements in one transaction (all or none:
    a finished trial raises as ``set_user_attr`` would, a parameter whose distribution clashes with the study's
    as ``suggest_*`` would), then the trial's cached copy updated to match."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    tid = trial_id(trial)
    with _create_scoped_session(rdb.scoped_session, True) as session:
        for name, internal, distribution in params:
            rdb._set_trial_param_without_commit(session, tid, name, internal, distribution)
        for step, value in values.items():
            rdb._set_trial_intermediate_value_without_commit(session, tid, step, value)
        if not _upsert_user_attrs(rdb, session, tid, attrs):
            for key, item in attrs.items():
                rdb._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, tid, key, item)
    cached = cached_trial(trial)
    cached.intermediate_values.update(values)
    cached.user_attrs.update(attrs)


def _upsert_user_attrs(
    rdb: optuna.storages.RDBStorage, session: Any, tid: int, attrs: Mapping[str, Any]
) -> bool:
    """``attrs`` as one multi-row upsert on SQLite (3.24+) and PostgreSQL: the rows and the running-trial check of
    ``_set_trial_attr_without_commit`` (which Optuna issues as a lookup and an upsert per attribute, some twenty
    statements for a trial's setup; milliseconds that a 0.1-second trial feels). ``False`` where the dialect has
    no such statement (the caller then writes them one by one)."""
    import json
    import sqlite3

    from optuna.storages._rdb import models

    dialect = rdb.engine.name
    if not attrs or not (
        dialect == "postgresql" or (dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24))
    ):
        return False
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = sqlite.insert if dialect == "sqlite" else postgresql.insert
    trial = models.TrialModel.find_or_raise_by_id(tid, session)
    rdb.check_trial_is_updatable(tid, trial.state)
    table = models.TrialUserAttributeModel
    rows = [{"trial_id": tid, "key": key, "value_json": json.dumps(item)} for key, item in attrs.items()]
    stmt = insert(table).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.trial_id, table.key], set_={"value_json": stmt.excluded.value_json}
        )
    )
    return True


def orphaned_heartbeat_stops() -> Iterator[tuple[threading.Thread, threading.Event]]:
    """Each running Optuna heartbeat thread with the stop event it was started with (its third argument)."""
    from optuna.storages._heartbeat import HeartbeatThread

    for thread in threading.enumerate():
        if getattr(thread, "_target", None) is HeartbeatThread._record_heartbeat:
            args: tuple[Any, ...] = tuple(getattr(thread, "_args", ()))
            if len(args) == 3 and isinstance(args[2], threading.Event):
                yield thread, args[2]


def serialise_state_changes(
    storage: optuna.storages.BaseStorage, guard: Callable[[], contextlib.AbstractContextManager[Any]]
) -> None:
    """Run every ``set_trial_state_values`` of ``storage`` inside ``guard()``, one at a time: the call a worker
    takes a WAITING trial with, which must say True to one caller only."""
    change = storage.set_trial_state_values

    def set_trial_state_values(
        trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with guard():
            return change(trial_id, state=state, values=values)

    storage.set_trial_state_values = set_trial_state_values  # type: ignore[method-assign]
