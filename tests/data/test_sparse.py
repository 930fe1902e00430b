"""Sparse ID fields in a user's table: vocabularies from the training rows, rare and unseen values on the
out-of-vocabulary row, hashing, lists per cell, inference of ID columns, and what ``hpo data info`` prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hpo.cli import main
from hpo.data.sparse import hashed
from hpo.data.user import load_user_dataset
from hpo.errors import DataError
from hpo.yamlio import load_yaml_text


def log(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = [f"u{k}" for k in rng.zipf(1.6, n) % 120]
    tags = ["|".join(f"t{t}" for t in rng.choice(9, rng.integers(0, 5), replace=False)) for _ in range(n)]
    click = (rng.random(n) < 0.4).astype(int)
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": rng.integers(0, 50, n),
            "tags": tags,
            "price": rng.random(n).round(3),
            "rating": rng.choice([1.5, 2.5, 3.5], n),
            "click": click,
            "buy": np.where(click == 1, (rng.random(n) < 0.5).astype(int), 0),
        }
    )


def declare(tmp_path: Path, body: dict, df: pd.DataFrame) -> Path:
    df.to_csv(tmp_path / "log.csv", index=False)
    p = tmp_path / "log.yaml"
    p.write_text(yaml.safe_dump({"name": "log", "file": "log.csv", **body}))
    return p


TASKS = [
    {"name": "click", "column": "click", "equals": 1},
    {"name": "buy", "column": "buy", "equals": 1, "on": {"task": "click", "equals": 1}},
]


def codes_of(ds, column: int, split: str = "train") -> np.ndarray:
    return ds.splits[split].cat[:, column].numpy()


def test_vocabulary_fitted_on_training_rows_with_a_minimum_count(tmp_path: Path) -> None:
    df = log()
    body = {
        "sparse": [{"name": "user_id", "min_count": 3}, "item_id"],
        "continuous": ["price"],
        "tasks": TASKS,
        "split": {"valid": 0.2, "test": 0.2, "seed": 0},
    }
    ds = load_user_dataset(declare(tmp_path, body, df), use_cache=False)
    user, item = ds.spec.sparse
    assert (user.name, item.name) == ("user_id", "item_id") and ds.spec.cardinalities == ()
    train_rows = np.sort(np.random.default_rng(0).permutation(len(df))[: round(0.6 * len(df))])
    counts = df.user_id.iloc[train_rows].value_counts()
    kept = sorted(counts[counts >= 3].index)
    assert user.vocab == len(kept) + 1  # row 0 is the out-of-vocabulary row
    codes = codes_of(ds, 0)
    expected = [kept.index(u) + 1 if u in kept else 0 for u in df.user_id.iloc[train_rows]]
    assert codes.tolist() == expected  # sorted vocabulary, rare values on row 0
    fields = {f["name"]: f for f in ds.provenance["sparse_fields"]}
    assert fields["user_id"]["rare_values_folded"] == int((counts < 3).sum())
    oov = fields["user_id"]["out_of_vocabulary_rate"]
    assert oov["train"] == pytest.approx(float((codes == 0).mean()))
    assert oov["valid"] >= oov["train"]  # unseen values too, not only rare ones


def test_hashed_field_is_stable_and_has_no_vocabulary(tmp_path: Path) -> None:
    df = log()
    body = {"sparse": [{"name": "user_id", "hash_buckets": 16}], "continuous": ["price"], "tasks": TASKS}
    ds = load_user_dataset(declare(tmp_path, body, df), use_cache=False)
    (user,) = ds.spec.sparse
    assert user.vocab == 16
    assert hashed(["u1", "u2", "u1"], 16).tolist() == hashed(["u1", "u2", "u1"], 16).tolist()
    assert hashed(["u1"], 16)[0] == hashed(["u1", "zz"], 16)[0]  # a value's bucket depends on it alone
    for split in ("train", "valid", "test"):
        codes = codes_of(ds, 0, split)
        assert codes.min() >= 0 and codes.max() < 16
    info = ds.sparse_info()[0]
    assert info["hash_buckets"] == 16 and info["unseen_rate"]["valid"] <= 0.2


def test_list_cells_fill_slots_and_are_pooled(tmp_path: Path) -> None:
    df = log()
    df.loc[0, "tags"] = "t1|t2|t3|t4|t5|t6"  # longer than max_values: cut, and counted
    body = {
        "sparse": [{"name": "tags", "separator": "|", "max_values": 4, "pooling": "mean"}],
        "continuous": ["price"],
        "tasks": TASKS,
        "split": {"valid": 0.2, "test": 0.2, "seed": 0},
    }
    ds = load_user_dataset(declare(tmp_path, body, df), use_cache=False)
    (tags,) = ds.spec.sparse
    assert (tags.slots, tags.pooling, tags.vocab) == (4, "mean", 10)  # t0..t8 and the OOV row
    cat = np.concatenate([ds.splits[s].cat.numpy() for s in ("train", "valid", "test")])
    present = (cat >= 0).sum(1)
    lengths = np.minimum(df.tags.fillna("").map(lambda s: len([t for t in s.split("|") if t])), 4)
    order = np.concatenate(
        [np.sort(p) for p in np.split(np.random.default_rng(0).permutation(len(df)), [240, 320])]
    )
    assert present.tolist() == lengths.to_numpy()[order].tolist()  # -1 pads every row to 4 slots
    summary = next(f for f in ds.provenance["sparse_fields"] if f["name"] == "tags")
    assert sum(summary["truncated_rows"].values()) == 1


def test_declared_sparse_field_is_never_inferred_and_ids_are_found(tmp_path: Path) -> None:
    df = log()
    ds = load_user_dataset(declare(tmp_path, {"sparse": ["user_id"], "ignore": ["tags"], "tasks": TASKS}, df))
    notes = ds.provenance["column_inference"]
    assert [f.name for f in ds.spec.sparse] == ["user_id", "item_id"]  # item_id: whole numbers named as an ID
    assert any(n.startswith("item_id: sparse (named as an ID") for n in notes)
    assert not any(n.startswith("user_id") for n in notes)  # declared: not inferred at all
    assert "price" in ds.continuous and "rating" in ds.continuous  # fractions: continuous however few values


@pytest.mark.parametrize(
    ("sparse", "extra", "message"),
    [
        (["price"], {"continuous": ["price"]}, r"\['price'\] listed in both `sparse` and `continuous`"),
        ([{"name": "user_id", "hash_buckets": 8, "min_count": 2}], {}, "min_count applies to a vocabulary"),
        ([{"name": "user_id", "pooling": "mean"}], {}, "max_values and pooling need a separator"),
        (["click"], {}, r"\['click'\] listed in `sparse` is a task's label column"),
        (["nope"], {"continuous": ["price"]}, "column 'nope' not found"),
    ],
)
def test_bad_sparse_declarations_are_one_line(tmp_path: Path, sparse, extra, message) -> None:
    path = declare(tmp_path, {"sparse": sparse, "tasks": TASKS, **extra}, log())
    with pytest.raises(DataError, match=message) as err:
        load_user_dataset(path, use_cache=False)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)  # the YAML or the table it reads


def test_data_info_prints_each_field_and_each_tasks_rows(tmp_path: Path, capsys) -> None:
    body = {
        "sparse": [{"name": "user_id", "min_count": 2}, {"name": "tags", "separator": "|"}],
        "continuous": ["price"],
        "tasks": TASKS,
    }
    path = declare(tmp_path, body, log())
    assert main(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0 categorical, 2 sparse (embedded)" in out
    assert "sparse field user_id: vocabulary" in out and "min count 2" in out
    assert "sparse field tags:" in out and "4 values per row pooled by sum" in out
    assert "values out of vocabulary or never seen in training: valid" in out
    assert "task buy (binary)" in out and "defined on a subset of rows: train" in out


def test_cached_dataset_keeps_its_sparse_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    body = {"sparse": [{"name": "tags", "separator": "|", "dim": 5}], "continuous": ["price"], "tasks": TASKS}
    path = declare(tmp_path, body, log())
    first = load_user_dataset(path)
    again = load_user_dataset(path)
    assert again.spec == first.spec and again.spec.sparse[0].dim == 5
    assert (again.splits["test"].cat == first.splits["test"].cat).all()


def test_yaml_plain_scalars_follow_yaml_1_2() -> None:
    """YAML 1.1 (PyYAML's rules) reads ``on``/``yes`` as booleans (a task's ``on:`` key arrived as ``True``),
    ``109_14`` as 10914 (an Ali-CCP field ID lost its name) and ``010`` as 8, and leaves ``1e-4`` text."""
    data = load_yaml_text(
        "tasks: [{name: buy, on: {task: click}, equals: yes}]\nflag: true\nx: [109_14, 010, 1e-4]"
    )
    assert data == {
        "tasks": [{"name": "buy", "on": {"task": "click"}, "equals": "yes"}],
        "flag": True,
        "x": ["109_14", 10, 1e-4],
    }
