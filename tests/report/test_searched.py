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


def test_a_probe_chosen_trial_is_judged_against_the_final_ranges() -> None:
    """Where a seed probe retrained another trial than the best, the row names it and its bound hits, judged as
    the convergence rule judges a best trial: against the widened range (a value drawn on the old bound is on no
    bound of the wider one), with a units count at the budget's ceiling no bound."""
    from optuna.distributions import IntDistribution

    study = optuna.create_study(direction="maximize")
    narrow = {
        "n_layers": IntDistribution(1, 2),
        "units": IntDistribution(16, 2048),
        "n_experts": IntDistribution(2, 8),
    }
    wide = {**narrow, "n_layers": IntDistribution(1, 3)}
    for value, params, dists in [
        (0.90, {"n_layers": 2, "units": 2048, "n_experts": 8}, narrow),  # trial 0: drawn before the widening
        (0.95, {"n_layers": 2, "units": 500, "n_experts": 4}, wide),  # trial 1: the best, on no bound
        (0.91, {"n_layers": 3, "units": 100, "n_experts": 2}, wide),  # trial 2: on two bounds
    ]:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    assert "retrained_trial" not in searched_row("moe", study, 2048, retrained=1)  # the best itself
    assert "retrained_trial" not in searched_row("moe", study, 2048, retrained=None)
    row = searched_row("moe", study, 2048, retrained=0)
    assert (row["best_on_bound"], row["retrained_trial"]) == ("", 0)
    assert (
        row["retrained_on_bound"] == "n_experts=8 (high)"
    )  # n_layers=2 is inside 1..3; 2048 units the ceiling
    row = searched_row("moe", study, 2048, retrained=2)
    assert row["retrained_on_bound"] == "n_layers=3 (high), n_experts=2 (low)"
    assert "retrained_trial" not in searched_row("moe", study, 2048, retrained=7)  # no such complete trial
