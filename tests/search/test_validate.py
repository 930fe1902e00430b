"""`hpo validate`: every problem of a study at once, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpo.errors import ConfigError
from hpo.search.validate import validate_file
from tests.search.conftest import make_study


def test_a_good_study_lists_each_architecture_with_its_widest_layer(tmp_path: Path) -> None:
    lines = validate_file(make_study(tmp_path), samples=5)
    assert "study" in lines[0] and "ok (2 architectures, 2 tasks)" in lines[0]
    assert lines[1].startswith(
        "  dataset synthetic-p0.7-seed0: rows"
    )  # the dataset is loaded, as a run would
    archs = [line for line in lines[1:] if not line.startswith(("    ", "  dataset"))]
    assert [line.split(":")[0].strip() for line in archs] == ["shared_bottom", "mmoe"]
    assert all("(budget 2048)" in line for line in archs)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    space = tmp_path / "search_spaces" / "shared_bottom.yaml"
    raw = yaml.safe_load(space.read_text())
    raw["params"][next(iter(raw["params"]))] = {"type": "int", "low": 3000, "high": 4000}
    space.write_text(yaml.safe_dump(raw))
    opt = tmp_path / "search_spaces" / "optimizer_smoke.yaml"
    raw = yaml.safe_load(opt.read_text())
    raw["params"]["not_a_setting"] = {"type": "float", "low": 0.1, "high": 0.2}
    opt.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        validate_file(study, samples=5)
    message = str(err.value)
    assert "budget" in message and "not_a_setting" in message and "\n" not in message


def test_search_space_and_optimiser_files_validate_alone(tmp_path: Path) -> None:
    make_study(tmp_path)
    (line,) = validate_file(tmp_path / "search_spaces" / "mmoe.yaml", samples=5)
    assert "mmoe ok" in line and "units per layer" in line
    (line,) = validate_file(tmp_path / "search_spaces" / "optimizer_smoke.yaml")
    assert "optimiser space ok" in line


def test_a_cause_shared_by_many_configurations_is_said_once_with_the_parameter_to_lower(
    tmp_path: Path,
) -> None:
    """Every sampled Shared-Bottom is over the budget: one problem with its count and first configuration, and
    the parameter whose low bound would fit (the upper bound to lower)."""
    study = make_study(tmp_path)
    space = tmp_path / "search_spaces" / "shared_bottom.yaml"
    raw = yaml.safe_load(space.read_text())
    first = next(iter(raw["params"]))
    raw["params"][first] = {"type": "int", "low": 64, "high": 3000}
    space.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        validate_file(study, samples=30)
    message = str(err.value)
    assert "\n" not in message and message.count("over the budget") == 1, message
    assert "sampled configurations fail, e.g. {" in message
    assert f"lower the upper bound of {first}" in message
    assert str(space.resolve()) in message  # the absolute path of the file to edit


def test_a_study_outside_the_repository_uses_the_shipped_spaces(tmp_path: Path) -> None:
    """No search_spaces/ beside the study's folder: the architectures use the spaces hpo ships, and validate
    says so; a missing file named by the study is reported with its absolute path."""
    (tmp_path / "mine").mkdir()
    study = tmp_path / "mine" / "study.yaml"
    spec = {
        "name": "mine",
        "dataset": {"kind": "synthetic", "p": 0.7, "d": 8, "n_train": 200, "n_valid": 100, "n_test": 100},
        "architectures": ["shared_bottom", "mmoe"],
        "trials": 2,
    }
    study.write_text(yaml.safe_dump(spec))
    lines = validate_file(study, samples=5)
    assert any("shared_bottom" in line and "space: the shipped shared_bottom.yaml" in line for line in lines)
    spec["architectures"] = [{"name": "mmoe", "search_space": "nowhere/mmoe.yaml"}]
    study.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as err:
        validate_file(study, samples=5)
    assert str(tmp_path / "mine" / "nowhere" / "mmoe.yaml") + ": file not found" in str(err.value)


def test_validate_warns_when_the_seeds_cannot_separate_anything(tmp_path: Path) -> None:
    """4 seeds per side, 2 architectures and 2 tasks: the smallest corrected p is 2/70 x 2 = 0.057, not below
    0.05; validate says so in one line with the count that would (5 seeds: 2/252 x 2)."""
    lines = validate_file(make_study(tmp_path, retrain={"seeds": 4}), samples=5)
    (warning,) = [line for line in lines if line.startswith("warning:")]
    assert "retrain.seeds 4 cannot separate any pair" in warning and "0.057" in warning
    assert "5 seeds per architecture can" in warning
    assert not [
        x for x in validate_file(make_study(tmp_path, retrain={"seeds": 8}), samples=5) if "warning" in x
    ]
