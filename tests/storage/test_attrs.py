from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from hpo.storage.attrs import deferred_params, report_epoch, set_trial_attrs, write_proposal
from hpo.storage.engine import open_storage

ATTRS: dict[str, Any] = {"a": 1, "b": {"nested": [1.5, None]}, "c": "text"}


def _storage(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> optuna.storages.BaseStorage:
    """A fresh storage of each kind hpo supports: SQLite, PostgreSQL (the CI server), a journal file, memory."""
    if kind == "sqlite":
        return open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    if kind == "postgres":
        return open_storage(request.getfixturevalue("postgres_url"), heartbeat=False)
    if kind == "journal":
        return open_storage(f"journal:///{tmp_path / 'a.log'}", heartbeat=False)
    return optuna.storages.InMemoryStorage()


def _written(storage: optuna.storages.BaseStorage) -> tuple[optuna.Trial, dict[str, Any]]:
    study = optuna.create_study(storage=storage, study_name=f"attrs-{uuid.uuid4().hex[:8]}")
    trial = study.ask()
    trial.set_user_attr("a", 0)  # overwritten by the batch, as set_user_attr would
    set_trial_attrs(trial, ATTRS)
    return trial, study.trials[0].user_attrs


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "journal", "memory"])
def test_one_batch_writes_what_set_user_attr_would(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """The same rows on every storage: one transaction on SQL databases, one call each elsewhere; the trial's own
    copy (``trial.user_attrs``) agrees with the storage."""
    storage = _storage(kind, tmp_path, request)
    trial, stored = _written(storage)
    assert stored == ATTRS
    assert trial.user_attrs == ATTRS


def test_a_batch_on_a_finished_trial_is_refused_whole(tmp_path: Path) -> None:
    """Optuna's check that the trial is still running holds for the batch, and nothing of it is written."""
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError):
        set_trial_attrs(trial, ATTRS)
    assert study.trials[0].user_attrs == {}


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "memory"])
def test_an_epoch_report_writes_what_report_and_set_user_attr_would(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    storage = _storage(kind, tmp_path, request)
    study = optuna.create_study(storage=storage, study_name=f"epochs-{uuid.uuid4().hex[:8]}")
    trial = study.ask()
    report_epoch(trial, {0: 0.5}, {"live": {"epoch": 0}})
    report_epoch(trial, {}, {"live": {"epoch": 1}})  # a non-finite epoch: live progress only
    report_epoch(trial, {2: 0.25, 3: 0.125}, {"live": {"epoch": 2}})
    with pytest.warns(UserWarning, match="already reported"):  # Optuna's own rule, kept
        report_epoch(trial, {2: 0.75}, {})
    stored = study.trials[0]
    assert (
        stored.intermediate_values
        == {0: 0.5, 2: 0.25, 3: 0.125}
        == trial._cached_frozen_trial.intermediate_values
    )
    assert stored.user_attrs == {"live": {"epoch": 2}} == trial.user_attrs


def _propose(study: optuna.Study, *, deferred: bool) -> optuna.Trial:
    """One proposal of three parameters (float, log int, categorical) and its attributes, written as the
    objective writes it (``deferred``) or as plain Optuna does (one transaction per suggestion)."""
    trial = study.ask()

    def suggest() -> None:
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("units", 8, 2048, log=True)
        trial.suggest_categorical("act", ["relu", "gelu"])

    if deferred:
        with deferred_params(trial) as params:
            suggest()
        write_proposal(trial, params, ATTRS)
    else:
        suggest()
        for k, v in ATTRS.items():
            trial.set_user_attr(k, v)
    return trial


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "journal", "memory"])
def test_a_proposal_writes_what_suggest_and_set_user_attr_would(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """The same parameter rows (values and distributions) and attributes as Optuna's own calls, on every
    storage; the trial's own copy agrees; another trial of the study sees them."""
    storage = _storage(kind, tmp_path, request)
    names = [f"proposal-{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
    stored = []
    for name, deferred in zip(names, (False, True), strict=True):
        study = optuna.create_study(
            storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=3)
        )
        trial = _propose(study, deferred=deferred)
        (frozen,) = optuna.load_study(study_name=name, storage=storage).trials
        assert frozen.params == trial.params and frozen.distributions == trial.distributions
        assert frozen.user_attrs == ATTRS == trial.user_attrs
        stored.append(frozen)
    assert stored[0].params == stored[1].params and stored[0].distributions == stored[1].distributions


def _write_transactions() -> tuple[list[int], Callable[[], None]]:
    """A counter of committed transactions that wrote something (on every engine), and how to stop counting."""
    import sqlalchemy
    from sqlalchemy import event

    counts = [0, 0]  # writes seen in the open transaction, write transactions committed

    def statement(conn, cursor, sql: str, *args: object) -> None:  # type: ignore[no-untyped-def]
        if sql.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            counts[0] += 1

    def commit(conn) -> None:  # type: ignore[no-untyped-def]
        counts[1] += counts[0] > 0
        counts[0] = 0

    event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", statement)
    event.listen(sqlalchemy.engine.Engine, "commit", commit)

    def stop() -> None:
        event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", statement)
        event.remove(sqlalchemy.engine.Engine, "commit", commit)

    return counts, stop


def test_a_proposal_is_one_write_transaction(tmp_path: Path) -> None:
    """Three suggestions and three attributes: one transaction (one file sync on SQLite) instead of six."""
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    study = optuna.create_study(storage=storage, study_name="s", sampler=optuna.samplers.RandomSampler(0))
    study.ask()  # the schema and the study's first rows are not the proposal's
    counts, stop = _write_transactions()
    try:
        trial = _propose(study, deferred=False)
        plain = counts[1]
        study.tell(trial, 0.0)
        counts[1] = 0
        trial = _propose(study, deferred=True)
        deferred = counts[1]
    finally:
        stop()
    assert plain >= 1 + 6 and deferred == 1 + 1  # study.ask takes the trial in one transaction either way


def test_a_clashing_distribution_is_refused_and_nothing_of_the_proposal_is_written(tmp_path: Path) -> None:
    """A parameter whose distribution contradicts the study's (a float earlier, a category now) raises as
    ``suggest_*`` would, at the write, and the proposal's attributes are not written either."""
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    study = optuna.create_study(storage=storage, study_name="s")
    study.ask().suggest_float("x", 0.0, 1.0)
    trial = study.ask()
    with deferred_params(trial) as params:
        trial.suggest_categorical("x", ["a", "b"])
    with pytest.raises(ValueError):
        write_proposal(trial, params, ATTRS)
    assert study.trials[1].params == {} and study.trials[1].user_attrs == {}
