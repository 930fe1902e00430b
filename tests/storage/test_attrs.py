from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest

from hpo.storage.attrs import report_epoch, set_trial_attrs
from hpo.storage.engine import open_storage

ATTRS: dict[str, Any] = {"a": 1, "b": {"nested": [1.5, None]}, "c": "text"}


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
    if kind == "sqlite":
        storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    elif kind == "postgres":
        storage = open_storage(request.getfixturevalue("postgres_url"), heartbeat=False)
    elif kind == "journal":
        storage = open_storage(f"journal:///{tmp_path / 'a.log'}", heartbeat=False)
    else:
        storage = optuna.storages.InMemoryStorage()
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
    if kind == "sqlite":
        storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=False)
    elif kind == "postgres":
        storage = open_storage(request.getfixturevalue("postgres_url"), heartbeat=False)
    else:
        storage = optuna.storages.InMemoryStorage()
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
