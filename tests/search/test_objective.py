"""The objective: a proposal equal to a finished trial's parameters is resampled, then reused, never retrained."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.config.study import load_study
from hpo.search.objective import DuplicateConfiguration, Objective
from hpo.search.runner import load_study_dataset
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
