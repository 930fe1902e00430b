"""A trial claimed by a worker that died before its first heartbeat is failed and re-queued, not left RUNNING."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.storage.engine import open_storage
from hpo.storage.heartbeat import fail_unbeaten

S = optuna.trial.TrialState


def _claimed_without_beat(url: str, name: str) -> optuna.Study:
    """Two WAITING trials taken by ``ask`` (as a worker's ``optimize`` takes them), one of which then beats."""
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    study.enqueue_trial({"x": 1.0}, user_attrs={"ticket": 0})
    study.enqueue_trial({"x": 2.0}, user_attrs={"ticket": 1})
    study.ask()  # claimed; its worker is killed before any heartbeat
    beaten = study.ask()
    study._storage.record_heartbeat(beaten._trial_id)  # type: ignore[attr-defined]
    return study


def _check(study: optuna.Study) -> None:
    assert fail_unbeaten(study, grace_seconds=3600) == []  # too young to judge
    assert fail_unbeaten(study, grace_seconds=0) == [0]  # the beaten one is Optuna's to judge, not ours
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [S.FAIL, S.RUNNING, S.WAITING]
    assert trials[2].system_attrs["fixed_params"] == {"x": 1.0}  # the same parameters, re-queued
    assert trials[2].user_attrs["ticket"] == 0  # and the same ticket
    assert fail_unbeaten(study, grace_seconds=0) == []  # once


def test_unbeaten_trial_is_failed_and_requeued_on_sqlite(tmp_path: Path) -> None:
    _check(_claimed_without_beat(f"sqlite:///{tmp_path / 'h.db'}", "unbeaten"))


@pytest.mark.postgres
def test_unbeaten_trial_is_failed_and_requeued_on_postgres(postgres_url: str) -> None:
    _check(_claimed_without_beat(postgres_url, f"unbeaten-{__import__('uuid').uuid4().hex[:8]}"))
