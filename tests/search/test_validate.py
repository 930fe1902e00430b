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
