"""The report's "what was searched" facts, on a study whose answers are known."""

from __future__ import annotations

import optuna

from hpo.report.searched import bounds_hit, searched_row


def test_bounds_and_units_on_a_hand_built_study() -> None:
    study = optuna.create_study(direction="maximize")
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "layer_units": optuna.distributions.IntDistribution(16, 2048, log=True),
        "n_experts": optuna.distributions.IntDistribution(2, 16),
        "gate": optuna.distributions.CategoricalDistribution(["example", "static"]),
    }
    for value, params, units, epochs in [
        (0.90, {"lr": 1e-3, "layer_units": 64, "n_experts": 4, "gate": "static"}, [64, 8], 5),
        (0.95, {"lr": 1e-2, "layer_units": 2048, "n_experts": 7, "gate": "example"}, [2044, 8], 12),
    ]:
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=value,
                user_attrs={"units_per_layer": units, "epochs_run": epochs},
            )
        )
    assert bounds_hit(study.best_trial) == ["lr=0.01 (high)", "layer_units=2048 (high)"]
    row = searched_row("mmoe", study, 2048)
    assert row == {
        "architecture": "mmoe",
        "complete_trials": 2,
        "max_epochs_run": 12,
        "max_units_per_layer_used": 2044,
        "space_ceiling": 2048,
        "budget": 2048,
        "best_on_bound": "lr=0.01 (high), layer_units=2048 (high)",
    }


def test_a_small_space_reports_its_own_ceiling_beside_the_budget() -> None:
    """A study on spaces capped at 256 units must not read as a search up to the 2048-unit budget."""
    study = optuna.create_study(direction="maximize")
    dists = {
        "layer_units": optuna.distributions.IntDistribution(16, 256, log=True),
        "tower_units": optuna.distributions.IntDistribution(4, 64, log=True),
    }
    study.add_trial(
        optuna.trial.create_trial(
            params={"layer_units": 200, "tower_units": 64},
            distributions=dists,
            value=0.9,
            user_attrs={"units_per_layer": [200, 64], "epochs_run": 3},
        )
    )
    row = searched_row("shared_bottom", study, 2048)
    assert (row["max_units_per_layer_used"], row["space_ceiling"], row["budget"]) == (200, 256, 2048)


def test_a_count_at_a_floor_of_one_is_not_a_bound_the_range_chose() -> None:
    from optuna.distributions import IntDistribution

    trial = optuna.trial.create_trial(
        params={"n_shared": 1, "n_levels": 2},
        distributions={"n_shared": IntDistribution(1, 4), "n_levels": IntDistribution(2, 3)},
        value=0.5,
    )
    assert bounds_hit(trial) == ["n_levels=2 (low)"]
