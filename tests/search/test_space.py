from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.config.space import SearchSpace, evaluate, load_space
from hpo.errors import ConfigError
from hpo.models import list_models
from hpo.search.validate import check_space, validate_file
from tests.search.conftest import ROOT, make_study

ARCHS = [e.name for e in list_models()]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("n_tasks", [2, 3])
def test_thousands_of_sampled_configurations_respect_the_budget(arch: str, n_tasks: int) -> None:
    space = load_space(ROOT / "search_spaces" / f"{arch}.yaml")
    rep = check_space(space, arch, n_tasks, samples=2000, seed=n_tasks)
    assert rep.problems == []
    assert rep.configurations >= 2000
    assert 0 < rep.max_units <= 2048


@pytest.mark.parametrize("arch", ARCHS)
def test_every_search_range_is_fixed_so_gp_models_every_dimension(arch: str) -> None:
    """The distributions a trial suggests must not depend on earlier values (the GP samples those at random)."""
    space = load_space(ROOT / "search_spaces" / f"{arch}.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = None
    for _ in range(30):
        trial = study.ask()
        space.suggest(trial)
        dists = trial.distributions
        assert seen is None or dists == seen
        seen = dists
        study.tell(trial, 0.0)


def test_expressions_are_restricted() -> None:
    env = {"a": 7, "n_tasks": 2}
    assert evaluate("[max(1, a // n_tasks)] * 2", env, "x") == [3, 3]
    assert evaluate(5, env, "x") == 5
    with pytest.raises(ConfigError, match="unknown name 'b'"):
        evaluate("b + 1", env, "x")
    with pytest.raises(ConfigError, match="uses something other than"):
        evaluate("__import__('os').system('true')", env, "x")
    with pytest.raises(ConfigError, match="cannot be evaluated"):
        evaluate("a // 0", env, "x")


def test_over_budget_space_is_caught_with_the_sample_and_the_layer(tmp_path: Path) -> None:
    bad = tmp_path / "mmoe.yaml"
    bad.write_text(
        "architecture: mmoe\nparams:\n  n_experts: {type: int, low: 2, high: 16}\n"
        "  units: {type: int, low: 8, high: 512}\nmodel:\n  n_experts: n_experts\n  expert_units: '[units]'\n"
    )
    with pytest.raises(ConfigError, match=r"hidden layer 1 has 8192 units \(experts 16x512\)"):
        validate_file(bad)


def test_validate_reports_every_study_problem_at_once(tmp_path: Path) -> None:
    path = make_study(tmp_path, sampler={"name": "annealing"}, trials=0, architectures=["mmoe", "nope"])
    with pytest.raises(ConfigError) as err:
        validate_file(path)
    msg = str(err.value)
    assert "\n" not in msg
    for part in (
        "sampler.name: Input should be 'gp'",
        "trials: Input should be greater than or equal to 1",
        "unknown architecture 'nope'",
    ):
        assert part in msg


def test_validate_a_good_study_builds_configurations(tmp_path: Path) -> None:
    lines = validate_file(make_study(tmp_path), samples=50)
    assert "ok" in lines[0] and any("mmoe:" in line and "max" in line for line in lines)


def test_search_space_errors_name_file_and_field(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("params:\n  lr: {type: float, low: 1, high: 0.1}\n  k: {type: int}\n")
    with pytest.raises(ConfigError) as err:
        load_space(p)
    assert "params.lr: Value error, low (1.0) must not exceed high (0.1)" in str(err.value)
    assert "params.k: Value error, an int parameter needs `low` and `high`" in str(err.value)


def test_derive_turns_lists_into_tuples() -> None:
    space = SearchSpace(model={"expert_units": "[u // n_tasks]"})
    assert space.derive({"u": 10}, 2) == {"expert_units": (5,)}
