from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hpo.cli import main
from hpo.data.user import load_user_dataset
from hpo.errors import DataError


def table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.integers(18, 90, n),
            "spend": rng.gamma(2.0, 50.0, n).round(2),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "plan": rng.choice(["basic", "gold", "platinum"], n),
            "status": rng.choice(["stayed", "left"], n),
        }
    )


def declare(tmp_path: Path, body: dict, df: pd.DataFrame | None = None, name: str = "t.csv") -> Path:
    if df is not None:
        if name.endswith(".parquet"):
            df.to_parquet(tmp_path / name)
        else:
            df.to_csv(tmp_path / name, index=False)
    p = tmp_path / "dataset.yaml"
    p.write_text(yaml.safe_dump(body))
    return p


BASE = {
    "name": "churn",
    "file": "t.csv",
    "continuous": ["age", "spend"],
    "categorical": ["city", "plan"],
    "tasks": [
        {"name": "churned", "column": "status", "kind": "binary", "equals": "left"},
        {"name": "premium", "column": "plan", "kind": "binary", "in": ["gold", "platinum"]},
        {"name": "big", "column": "spend", "kind": "binary", "above": 100},
        {"name": "spend", "column": "spend", "kind": "regression"},
    ],
    "split": {"valid": 0.2, "test": 0.1, "seed": 1},
}


@pytest.mark.parametrize("fmt", ["t.csv", "t.parquet"])
def test_declared_table_becomes_a_dataset(tmp_path: Path, fmt: str) -> None:
    df = table()
    ds = load_user_dataset(declare(tmp_path, {**BASE, "file": fmt}, df, fmt))
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [210, 60, 30]
    assert ds.continuous == ("age",) and ds.categorical == ("city",)  # label columns leave the inputs
    assert [t.kind for t in ds.tasks] == ["binary"] * 3 + ["regression"]
    y = np.concatenate([ds.splits[s].y.numpy() for s in ("train", "valid", "test")])
    assert y[:, 0].sum() == (df.status == "left").sum()
    assert y[:, 1].sum() == df.plan.isin(["gold", "platinum"]).sum()
    assert y[:, 2].sum() == (df.spend > 100).sum()
    assert np.isclose(np.sort(y[:, 3]), np.sort(df.spend.to_numpy()), atol=1e-3).all()


def test_separate_split_files(tmp_path: Path) -> None:
    for s, seed in (("train", 0), ("valid", 1), ("test", 2)):
        table(50, seed).to_csv(tmp_path / f"{s}.csv", index=False)
    body = {k: v for k, v in BASE.items() if k not in ("file", "split")}
    body["files"] = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
    ds = load_user_dataset(declare(tmp_path, body))
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [50, 50, 50]


def test_column_inference_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = {k: v for k, v in BASE.items() if k not in ("continuous", "categorical")}
    body["ignore"] = ["id"]
    path = declare(tmp_path, body, table())
    ds = load_user_dataset(path)
    assert ds.continuous == ("age",) and ds.categorical == ("city",)
    assert main(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "inferred age: continuous (whole numbers" in out and "inferred city: categorical (text" in out


def test_unseen_category_maps_to_unknown(tmp_path: Path) -> None:
    for s, cities in (("train", ["paris", "lyon"]), ("valid", ["nice"]), ("test", ["paris"])):
        df = table(40)
        df["city"] = np.resize(cities, 40)
        df.to_csv(tmp_path / f"{s}.csv", index=False)
    body = {k: v for k, v in BASE.items() if k not in ("file", "split")}
    body["files"] = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
    ds = load_user_dataset(declare(tmp_path, body))
    assert (ds.splits["valid"].cat[:, 0] == 0).all()
    assert (ds.splits["train"].cat[:, 0] > 0).all()


def errors(tmp_path: Path, body: dict, df: pd.DataFrame | None) -> str:
    with pytest.raises(DataError) as err:
        load_user_dataset(declare(tmp_path, body, df))
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    assert errors(tmp_path, {**BASE, "file": "nope.csv"}, None).endswith("nope.csv: file not found")


def test_missing_label_column(tmp_path: Path) -> None:
    body = {**BASE, "tasks": [{"name": "x", "column": "nope", "kind": "regression"}]}
    assert "t.csv: task 'x': label column 'nope' not found; the file's columns: ['id', 'age'" in errors(
        tmp_path, body, table()
    )


def test_single_class_task(tmp_path: Path) -> None:
    body = {**BASE, "tasks": [{"name": "x", "column": "status", "kind": "binary", "equals": "gone"}]}
    msg = errors(tmp_path, body, table())
    assert "t.csv: task 'x' (status == 'gone') has a single class in the train split (0 of 210 rows" in msg


def test_unparseable_number(tmp_path: Path) -> None:
    df = table().astype({"age": object})
    df.loc[7, "age"] = "old"
    msg = errors(tmp_path, {**BASE, "split": {"valid": 0.1, "test": 0.1, "seed": 0}}, df)
    assert "t.csv: line 9: column 'age': expected a number, got 'old'" in msg  # header + 0-based row 7


def test_nan_in_continuous_column(tmp_path: Path) -> None:
    df = table().astype({"age": float})
    df.loc[3, "age"] = np.nan
    msg = errors(tmp_path, BASE, df)
    assert "t.csv: line 5: column 'age' is missing (1 missing in this file); declare `na_values:`" in msg


def test_wrong_number_of_columns(tmp_path: Path) -> None:
    lines = table(5).to_csv(index=False).splitlines()
    lines[3] += ",extra"
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    assert "t.csv: line 4 has 7 fields where the first row has 6" in errors(tmp_path, BASE, None)


def test_empty_split(tmp_path: Path) -> None:
    for s in ("train", "valid", "test"):
        (table(0) if s == "test" else table(20)).to_csv(tmp_path / f"{s}.csv", index=False)
    body = {k: v for k, v in BASE.items() if k not in ("file", "split")}
    body["files"] = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
    assert "test.csv: split 'test' is empty" in errors(tmp_path, body, None)


def test_every_schema_problem_at_once(tmp_path: Path) -> None:
    body = {"name": "x", "tasks": [{"name": "a", "column": "b", "kind": "binary"}], "colour": "red"}
    msg = errors(tmp_path, body, None)
    assert "tasks.0: Value error, binary task 'a' needs exactly one of" in msg
    assert "colour: Extra inputs are not permitted" in msg


def test_file_or_files(tmp_path: Path) -> None:
    body = {k: v for k, v in BASE.items() if k != "file"}
    assert "give either `file` (one table, split by `split`) or `files`" in errors(tmp_path, body, None)
