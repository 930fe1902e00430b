"""What ``hpo proxy`` serves: a trial's state changes one at a time, so no two workers take one WAITING trial."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import optuna

from hpo.storage.engine import open_storage
from hpo.storage.proxy import served_storage

RUNNING = optuna.trial.TrialState.RUNNING


def double_takes(storage: optuna.storages.BaseStorage, trials: int = 60, threads: int = 6) -> int:
    """Trials that more than one of ``threads`` racing threads (the proxy's server threads) took from WAITING."""
    study = optuna.create_study(
        storage=storage, study_name=f"race-{uuid.uuid4().hex}"
    )  # a shared server keeps old studies
    for _ in range(trials):
        study.enqueue_trial({}, skip_if_exists=False)
    ids = [t._trial_id for t in study.get_trials(deepcopy=False)]
    wins = dict.fromkeys(ids, 0)
    together = threading.Barrier(threads, timeout=60)

    def server_thread() -> None:
        for trial_id in ids:
            together.wait()  # every thread asks for the same WAITING trial at once
            if storage.set_trial_state_values(trial_id, RUNNING):
                wins[trial_id] += 1

    pool = [threading.Thread(target=server_thread) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(n > 1 for n in wins.values())


def test_the_served_storage_gives_each_waiting_trial_to_one_taker(tmp_path: Path) -> None:
    plain = optuna.storages.get_storage(open_storage(f"sqlite:///{tmp_path / 'plain.db'}", heartbeat=False))
    assert double_takes(plain) > 0, (
        "Optuna's SQLite storage no longer races: this test no longer tests the fix"
    )
    assert double_takes(served_storage(f"sqlite:///{tmp_path / 'served.db'}", create=True)) == 0


def test_the_served_storage_on_postgres_gives_each_waiting_trial_to_one_taker(postgres_url: str) -> None:
    assert double_takes(served_storage(postgres_url)) == 0
