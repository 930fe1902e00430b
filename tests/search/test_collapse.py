"""The GP's view of collapsed trials: each shown as the worst of the rest, nothing else changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from hpo.config.study import load_study
from hpo.errors import ConfigError
from hpo.search.collapse import CollapseAwareGPSampler, last_view, sampler_values
from hpo.search.factories import make_sampler
from hpo.search.objective import Objective
from hpo.search.studies import load_study_dataset
from hpo.storage import keys
from tests.search.conftest import make_study

X = optuna.distributions.FloatDistribution(0.0, 1.0)
Y = optuna.distributions.FloatDistribution(0.0, 1.0)


def _study(sampler: optuna.samplers.BaseSampler, values: list[float]) -> optuna.Study:
    """A study of two parameters with a planted trial per value, at fixed points."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    rng = np.random.default_rng(3)
    for v in values:
        x, y = rng.random(2)
        study.add_trial(
            optuna.trial.create_trial(params={"x": x, "y": y}, distributions={"x": X, "y": Y}, value=v)
        )
    return study


def _propose(study: optuna.Study) -> dict[str, float]:
    t = study.ask()
    return {"x": t.suggest_float("x", 0.0, 1.0), "y": t.suggest_float("y", 0.0, 1.0)}


def test_collapsed_values_are_shown_as_the_worst_of_the_rest() -> None:
    """Collapsed: a gain over the chance level under 80% of the median trial's (a run that learned nothing, or far
    less than the typical one); the rest, a long tail included, as they are."""
    values = np.array([0.947, 0.5, 0.944, 0.405, 0.516, 0.938, 0.946])
    shown, n = sampler_values(values, 0.5, higher_is_better=True)
    assert n == 3 and shown.tolist() == [0.947, 0.938, 0.944, 0.938, 0.938, 0.938, 0.946]
    slow = np.array([0.947, 0.944, 0.80, 0.938, 0.946, 0.941, 0.943])  # learned a little: not at chance
    shown, n = sampler_values(slow, 0.5, higher_is_better=True)
    assert n == 1 and shown[2] == 0.938
    assert sampler_values(slow, None, higher_is_better=True)[1] == 0  # no chance level: no scale to judge by
    mse = np.array(
        [0.30, 1.02, 0.31, 0.36, 0.33, 1.40, 0.34]
    )  # a loss: the chance level is the labels' variance
    shown, n = sampler_values(mse, 1.0, higher_is_better=False)
    assert n == 2 and shown.tolist() == [0.30, 0.36, 0.31, 0.36, 0.33, 0.36, 0.34]
    tail = np.array(
        [0.94, 0.93, 0.92, 0.90, 0.88, 0.87, 0.86]
    )  # a long tail, none far behind: nothing to change
    assert sampler_values(tail, 0.5, higher_is_better=True)[0] is tail
    converged = np.array([0.9470, 0.9469, 0.9471, 0.9470, 0.9403, 0.9410])  # tight cluster + ordinary trials
    assert sampler_values(converged, 0.5, higher_is_better=True)[1] == 0
    most_failed = np.array([0.5, 0.5, 0.5, 0.94])  # collapse is the typical trial: the GP must see it
    assert sampler_values(most_failed, 0.5, higher_is_better=True)[1] == 0


def test_with_nothing_collapsed_it_proposes_what_the_plain_gp_proposes() -> None:
    values = [0.941, 0.947, 0.944, 0.939, 0.946, 0.943]
    plain = _study(optuna.samplers.GPSampler(seed=5, n_startup_trials=4), values)
    aware = _study(
        CollapseAwareGPSampler(chance=0.5, higher_is_better=True, seed=5, n_startup_trials=4), values
    )
    assert _propose(aware) == _propose(plain)
    assert last_view(aware.sampler) is None


def test_a_collapsed_trial_is_modelled_as_the_worst_that_learned_and_keeps_its_stored_value() -> None:
    """The proposal equals the plain GP's on the same trials with the collapsed value replaced (what the model
    sees), and differs from the plain GP's on the stored values (the view matters); the storage is unchanged."""
    values = [0.941, 0.947, 0.5, 0.944, 0.939, 0.946, 0.5, 0.943]
    aware = _study(
        CollapseAwareGPSampler(chance=0.5, higher_is_better=True, seed=5, n_startup_trials=4), values
    )
    viewed = _study(
        optuna.samplers.GPSampler(seed=5, n_startup_trials=4), [0.939 if v == 0.5 else v for v in values]
    )
    plain = _study(optuna.samplers.GPSampler(seed=5, n_startup_trials=4), values)
    proposed = _propose(aware)
    assert proposed == _propose(viewed) and proposed != _propose(plain)
    assert last_view(aware.sampler) == {"collapsed_trials": 2, "of": 8, "shown_as": 0.939}
    stored = [t.value for t in aware.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert stored == values


def test_the_study_file_chooses_the_view_for_the_gp_only(tmp_path: Path) -> None:
    spec = load_study(make_study(tmp_path))
    assert spec.sampler.collapsed == "worst"  # the default for gp
    assert isinstance(make_sampler(spec.sampler, chance=0.5), CollapseAwareGPSampler)
    assert (
        type(make_sampler(spec.sampler)) is optuna.samplers.GPSampler
    )  # no chance level: nothing to judge by
    assert type(make_sampler(spec.sampler, chance=0.5, multi_objective=True)) is optuna.samplers.GPSampler
    raw = load_study(make_study(tmp_path, sampler={"name": "gp", "collapsed": "raw"}))
    assert type(make_sampler(raw.sampler, chance=0.5)) is optuna.samplers.GPSampler
    with pytest.raises(ConfigError) as exc:
        load_study(make_study(tmp_path, sampler={"name": "tpe", "collapsed": "worst"}))
    assert "sampler.collapsed applies to the gp sampler only" in str(exc.value) and "\n" not in str(exc.value)


def test_a_trial_records_what_the_gp_saw_as_collapsed(tmp_path: Path) -> None:
    """Two planted trials that learned and one at the chance level (the objective's own: the labels' variance
    for this MSE objective), then a real trial: it records the view its proposal was made from."""
    spec = load_study(
        make_study(tmp_path, architectures=["shared_bottom"], training={"epochs": 1, "device": "cpu"})
    )
    objective = Objective(spec, "shared_bottom", load_study_dataset(spec), "cpu")
    chance = objective.chance
    assert chance is not None and not objective.higher_is_better
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    points = []
    for _ in range(3):
        t = draws.ask()
        objective.space.suggest(t)
        objective.opt_space.suggest(t)
        points.append(t)
    sampler = make_sampler(spec.sampler, chance=chance, higher_is_better=False)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    for t, v in zip(points, [0.3 * chance, 0.35 * chance, chance], strict=True):
        study.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=v))
    trial = study.ask()
    study.tell(trial, objective(trial))
    assert keys.plain(trial.user_attrs)[keys.SAMPLER_VIEW] == {
        "collapsed_trials": 1,
        "of": 3,
        "shown_as": pytest.approx(0.35 * chance),
    }
