"""A trial's attributes (and an epoch's intermediate value) written in one transaction.

Optuna writes each ``trial.set_user_attr`` in its own transaction: on SQLite that is one file sync, and a trial
records some twenty attributes (configuration, versions, thread count, metrics, curve). For a study of cheap trials
(a fraction of a second each) those syncs were a noticeable share of the study's time (figures in bench/PROFILE.md,
tenth pass). :func:`set_trial_attrs` writes a group of them at once on a SQL
database, with Optuna's own per-attribute statement and its check that the trial is still running, so the rows
are exactly those ``set_user_attr`` would write; on other storages (a gRPC proxy, a journal) it falls back to
one call each. :func:`report_epoch` does the same for what a trial records at the end of every epoch (its live
progress and the intermediate values pruners and the settled rule read), and :func:`write_proposal` for the
parameters a proposal suggested (Optuna writes each ``suggest_*`` in a transaction of its own) with the attributes
that go with them.

The Optuna internals it needs are in :mod:`hpo.storage.optuna_internals`; tests/storage/test_attrs.py pins that
what it writes is what Optuna's public calls write, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from hpo.storage.optuna_internals import (
    Param,
    cached_trial,
    deferred_params,
    sql_backend,
    write_trial_in_one_transaction,
)

__all__ = ["deferred_params", "report_epoch", "set_trial_attrs", "write_proposal"]


def set_trial_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """``trial.set_user_attr(k, v)`` for every item, in one transaction where the storage allows it (all or
    none are written: a failure raises as ``set_user_attr`` would, and the trial's cached copy is updated only
    after the commit)."""
    if attrs:
        report_epoch(trial, {}, attrs)


def report_epoch(trial: optuna.Trial, values: Mapping[int, float], attrs: Mapping[str, Any]) -> None:
    """``trial.report(value, step)`` for every item of ``values`` and ``trial.set_user_attr(k, v)`` for every item
    of ``attrs``, in one transaction where the storage allows it (one call each elsewhere). A step already
    reported, or a multi-objective study, goes through Optuna's own ``report`` (which warns or refuses as it
    always does)."""
    rdb = sql_backend(trial.storage)
    fresh: dict[int, float] = {}
    for step, value in values.items():
        if rdb is None or len(trial.study.directions) > 1 or step in cached_trial(trial).intermediate_values:
            trial.report(value, step)
        else:
            fresh[int(step)] = float(value)
    if rdb is None:
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        return
    write_trial_in_one_transaction(rdb, trial, fresh, attrs)


def write_proposal(trial: optuna.Trial, params: Sequence[Param], attrs: Mapping[str, Any]) -> None:
    """The parameters :func:`deferred_params` kept back and ``attrs``, in one transaction on a SQL database (on
    other storages nothing was kept back, and the attributes are written one call each)."""
    rdb = sql_backend(trial.storage)
    if rdb is None or not params:
        set_trial_attrs(trial, attrs)
        return
    write_trial_in_one_transaction(rdb, trial, {}, attrs, params)
