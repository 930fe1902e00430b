"""What hpo relies on in Optuna's private code, piece by piece: after an Optuna upgrade, the failing test here
names the piece that moved (hpo/storage/optuna_internals.py is the only module that touches them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from hpo.storage.engine import open_storage
from hpo.storage.optuna_internals import (
    cached_trial,
    deferred_params,
    orphaned_heartbeat_stops,
    serialise_state_changes,
    sql_backend,
    study_sql_backend,
    trial_id,
    write_trial_in_one_transaction,
)


def test_the_sql_storage_under_the_cache_wrapper(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    storage = open_storage(url, heartbeat=False)
    study = optuna.create_study(storage=storage, study_name="s")
    wrapped = study._storage  # what a study holds: Optuna's cache wrapper around the RDBStorage
    assert isinstance(study_sql_backend(study), optuna.storages.RDBStorage)
    assert sql_backend(wrapped) is study_sql_backend(study)
    assert sql_backend(optuna.storages.InMemoryStorage()) is None
    assert sql_backend(open_storage(f"journal:///{tmp_path / 'a.log'}", heartbeat=False)) is None


def test_trial_id_and_cached_copy(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    study = optuna.create_study(storage=storage, study_name="s")
    study.ask()
    trial = study.ask()
    tid = storage.get_trial_id_from_study_id_trial_number(study._study_id, trial.number)
    assert trial_id(trial) == tid == trial_id(study.trials[1])
    trial.set_user_attr("k", 1)
    assert cached_trial(trial).user_attrs == {"k": 1}  # the copy the trial reads and set_user_attr updates


def test_one_transaction_is_all_or_none(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    rdb = study_sql_backend(study)
    assert rdb is not None
    write_trial_in_one_transaction(rdb, trial, {0: 0.5, 1: 0.25}, {"a": [1, 2]})
    stored = study.trials[0]
    assert stored.intermediate_values == {0: 0.5, 1: 0.25} and stored.user_attrs == {"a": [1, 2]}
    assert cached_trial(trial).intermediate_values == {0: 0.5, 1: 0.25}
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError):  # Optuna's own check: a finished trial takes no attribute
        write_trial_in_one_transaction(rdb, trial, {2: 0.1}, {"b": 1})
    assert study.trials[0].user_attrs == {"a": [1, 2]} and 2 not in study.trials[0].intermediate_values


def test_suggestions_go_through_the_trials_storage_attribute(tmp_path: Path) -> None:
    """``Trial._suggest`` writes through ``trial.storage``: inside ``deferred_params`` a suggestion is sampled and
    kept back, the database has no parameter row until ``write_trial_in_one_transaction`` writes it."""
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    real = trial.storage
    with deferred_params(trial) as kept:
        x = trial.suggest_float("x", 0.0, 1.0)
        n = trial.suggest_int("n", 1, 8, log=True)
    assert trial.storage is real
    assert [k[0] for k in kept] == ["x", "n"] and trial.params == {"x": x, "n": n}
    assert study.trials[0].params == {}
    rdb = study_sql_backend(study)
    assert rdb is not None
    write_trial_in_one_transaction(rdb, trial, {}, {}, kept)
    assert study.trials[0].params == {"x": x, "n": n}
    assert study.trials[0].distributions == trial.distributions


def test_heartbeat_threads_are_found_while_a_trial_runs(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat_interval=60)
    study = optuna.create_study(storage=storage, study_name="s")
    seen: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(len(list(orphaned_heartbeat_stops())))
        return 0.0

    study.optimize(objective, n_trials=1)
    assert seen == [1]  # the running trial's heartbeat thread, with its stop event
    assert list(orphaned_heartbeat_stops()) == []  # stopped with its trial


def test_a_trial_is_taken_through_the_wrapped_state_change(tmp_path: Path) -> None:
    """The proxy serialises trial state changes by wrapping ``set_trial_state_values``: taking a queued trial and
    finishing it both go through it."""
    import contextlib

    storage = optuna.storages.get_storage(open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False))
    entered: list[int] = []

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        entered.append(1)
        yield

    serialise_state_changes(storage, guard)
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({})
    trial = study.ask()  # WAITING -> RUNNING
    study.tell(trial, 1.0)  # RUNNING -> COMPLETE
    assert len(entered) >= 2 and study.trials[0].state == optuna.trial.TrialState.COMPLETE
