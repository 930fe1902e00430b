"""The objective: a proposal equal to a finished trial's parameters is resampled, then reused, never retrained."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.config.study import load_study
from hpo.models import kernel_provenance
from hpo.search.objective import DuplicateConfiguration, Objective
from hpo.search.studies import load_study_dataset
from hpo.storage import keys
from tests.search.conftest import make_study


def test_a_repeated_configuration_is_resampled_then_reused(tmp_path: Path) -> None:
    spec = load_study(
        make_study(
            tmp_path,
            architectures=["shared_bottom"],
            sampler={"name": "random", "seed": 0},
            training={"epochs": 1, "device": "cpu"},
        )
    )
    ds = load_study_dataset(spec)
    objective = Objective(spec, "shared_bottom", ds, "cpu", worker_id=3)
    study = optuna.create_study(direction="minimize")
    first = study.ask()
    value = objective(first)
    study.tell(first, value)
    assert keys.plain(first.user_attrs)["worker_id"] == 3 and isinstance(
        keys.plain(first.user_attrs)["sampler_seed"], int
    )
    params = dict(first.params)

    study.enqueue_trial(params, user_attrs={"ticket": 1})  # the sampler proposes the same point again
    again = study.ask()
    with pytest.raises(DuplicateConfiguration):
        objective(again)
    assert keys.plain(again.user_attrs)["duplicate_of"] == first.number
    study.tell(again, state=optuna.trial.TrialState.FAIL)

    study.enqueue_trial(
        params, user_attrs={"ticket": 1, "resamples": 2}
    )  # still the same after two resamples
    last = study.ask()
    assert objective(last) == value  # the earlier result, not a second training
    assert keys.plain(last.user_attrs)["reused_from"] == first.number
    assert keys.plain(last.user_attrs)["metrics"] == keys.plain(first.user_attrs)["metrics"]


@pytest.mark.parametrize("pruner", [None, optuna.pruners.MedianPruner(n_startup_trials=5)])
def test_every_epoch_value_is_stored_with_or_without_a_pruner(
    tmp_path: Path, pruner: optuna.pruners.BasePruner | None
) -> None:
    """Without a pruner the epoch values are written in batches (at most every LIVE_SECONDS, the rest with the
    outcome); with one, each as its epoch ends. Either way the stored trial holds every epoch and the live line."""
    from hpo.storage.engine import open_storage

    spec = load_study(
        make_study(
            tmp_path,
            architectures=["shared_bottom"],
            training={"epochs": 4, "patience": None, "device": "cpu"},
        )
    )
    objective = Objective(spec, "shared_bottom", load_study_dataset(spec), "cpu")
    storage = open_storage(f"sqlite:///{tmp_path / 'e.db'}", heartbeat=False)
    study = optuna.create_study(direction="minimize", storage=storage, pruner=pruner)
    trial = study.ask()
    study.tell(trial, objective(trial))
    stored = study.trials[0]
    assert sorted(stored.intermediate_values) == [1, 2, 3, 4]
    assert all(v > 0 for v in stored.intermediate_values.values())  # validation MSE of each epoch
    assert keys.plain(stored.user_attrs)["live"]["epoch"] in (1, 2, 3, 4)
    assert keys.plain(stored.user_attrs)["kernel"] == kernel_provenance(
        "cpu"
    )  # compiled, or fallback and why
