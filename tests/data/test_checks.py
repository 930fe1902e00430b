"""Checks before any training, through the commands a user runs: ``hpo data info``, ``hpo validate``, ``hpo run``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpo.cli import main
from tests.data.test_tables import ADULT, rows, write
from tests.search.conftest import make_study


def dataset(tmp_path: Path, *, test_suffix: str = ".", body: dict | None = None) -> Path:
    write(tmp_path / "adult.data", rows(400, 0))
    write(tmp_path / "adult.test", rows(200, 1, suffix=test_suffix), banner=True)
    path = tmp_path / "adult.yaml"
    path.write_text(yaml.safe_dump(body or ADULT))
    return path


def one_error(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    out, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_data_info_shows_every_split_missing_values_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = dataset(tmp_path)
    assert main(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    rate = next(line for line in out.splitlines() if "task rich" in line)
    assert (
        rate.startswith("  task rich (binary): positive rate train 0.")
        and ", valid 0." in rate
        and ", test 0." in rate
    )
    age = next(line for line in out.splitlines() if "missing values in age" in line)
    assert "(imputed with the training median" in age and "indicator column 'age missing'" in age
    assert "missing values in work:" in out and "(its own category)" in out


def test_validate_loads_a_dataset_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = dataset(tmp_path)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: dataset ok\n  adult: rows {{'train': 300, 'valid': 100, 'test': 200}}")
    assert "positive rate train" in out


def study_on(tmp_path: Path, data: Path) -> Path:
    rel = Path("..") / data.name
    return make_study(tmp_path, dataset={"kind": "file", "path": str(rel)}, objective={"kind": "mean"})


def test_validate_refuses_a_study_whose_test_split_has_one_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = dataset(tmp_path, body={k: v for k, v in ADULT.items() if k != "label_suffix"})
    study = study_on(tmp_path, data)
    line = one_error(capsys, main(["validate", str(study)]))
    assert "adult.test: task 'rich' (income == '>50K') has a single class in the test split" in line
    db = tmp_path / "never.db"
    line = one_error(capsys, main(["run", str(study), "--storage", f"sqlite:///{db}"]))
    assert "has a single class in the test split" in line
    assert not db.exists()  # nothing created


def test_validate_passes_the_same_study_once_the_labels_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = study_on(tmp_path, dataset(tmp_path))
    assert main(["validate", str(study), "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "ok (2 architectures, 1 tasks)" in out and "  dataset adult: rows" in out


def test_validate_names_a_misspelled_column_and_a_non_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = dataset(tmp_path, body={**ADULT, "continuous": ["age", "hoursx"]})
    line = one_error(capsys, main(["validate", str(study_on(tmp_path, data))]))
    assert (
        "adult.data: column 'hoursx' not found; the file's columns: ['age', 'work', 'hours', 'income']"
        in line
    )
    train = rows(400, 0)
    train[9][2] = "many"
    write(tmp_path / "adult.data", train)
    (tmp_path / "adult.yaml").write_text(yaml.safe_dump(ADULT))
    line = one_error(capsys, main(["validate", str(tmp_path / "adult.yaml")]))
    assert line.endswith(
        "adult.data: line 10: column 'hours': expected a number, got 'many' (if it means a missing value, list it in `na_values`)"
    )
