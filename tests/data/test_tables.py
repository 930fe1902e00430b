"""Files as they are published (UCI Adult's shape): no header, a banner line, "?" for missing, "yes." labels."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hpo.data._tabular import split_indices
from hpo.data.user import load_user_dataset
from hpo.errors import DataError

COLUMNS = ["age", "work", "hours", "income"]
BANNER = "|1x3 Cross validator"


def rows(n: int, seed: int, suffix: str = "", missing: bool = True) -> list[list[str]]:
    """Header-less rows; every 7th age and every 5th work class is "?" when ``missing``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        age = "?" if missing and i % 7 == 3 else str(int(rng.integers(18, 90)))
        work = "?" if missing and i % 5 == 2 else str(rng.choice(["Private", "State-gov", "Self-emp"]))
        income = (">50K" if rng.random() < 0.3 else "<=50K") + suffix
        out.append([age, work, str(int(rng.integers(10, 60))), income])
    return out


def write(path: Path, body: list[list[str]], *, banner: bool = False, header: bool = False) -> Path:
    lines = ([BANNER] if banner else []) + ([",".join(COLUMNS)] if header else [])
    lines += [", ".join(r) for r in body]  # UCI writes a space after each comma
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


ADULT = {
    "name": "adult",
    "files": {"train": "adult.data", "test": "adult.test"},
    "columns": COLUMNS,
    "comment": "|",
    "na_values": ["?"],
    "label_suffix": ".",
    "continuous": ["age", "hours"],
    "categorical": ["work"],
    "tasks": [{"name": "rich", "column": "income", "equals": ">50K"}],
    "split": {"valid": 0.25, "seed": 3},
}


def declare(tmp_path: Path, body: dict) -> Path:
    p = tmp_path / "adult.yaml"
    p.write_text(yaml.safe_dump(body))
    return p


@pytest.fixture
def adult(tmp_path: Path) -> tuple[Path, list[list[str]], list[list[str]]]:
    train, test = rows(400, 0), rows(200, 1, suffix=".")
    write(tmp_path / "adult.data", train)
    write(tmp_path / "adult.test", test, banner=True)
    return declare(tmp_path, ADULT), train, test


def test_a_raw_published_pair_of_files_loads_without_losing_a_row(adult: tuple) -> None:
    path, train, test = adult
    ds = load_user_dataset(path)
    assert {s: len(ds.splits[s]) for s in ("train", "valid", "test")} == {
        "train": 300,
        "valid": 100,
        "test": 200,
    }
    assert ds.continuous == ("age", "hours", "age missing") and ds.categorical == ("work",)
    # the "." of the test file's labels is not a different class: positives are counted as written
    assert ds.splits["test"].y.sum().item() == sum(r[3] == ">50K." for r in test)
    assert ds.splits["train"].y.sum().item() + ds.splits["valid"].y.sum().item() == sum(
        r[3] == ">50K" for r in train
    )
    prov = ds.provenance
    assert set(prov["missing"]["age"]) == {"train", "valid", "test"}
    assert sum(prov["missing"]["age"].values()) == sum(r[0] == "?" for r in train + test)
    assert sum(prov["missing"]["work"].values()) == sum(r[1] == "?" for r in train + test)
    assert prov["split"] == {"valid": 0.25, "seed": 3, "from": "adult.data", "test": "file"}
    assert prov["warnings"] == []


def test_missing_numbers_take_the_training_median_and_an_indicator(adult: tuple) -> None:
    path, train, _ = adult
    ds = load_user_dataset(path)
    train_rows = split_indices(len(train), [0.75, 0.25], 3)[0]  # the rows carved for training
    ages = np.array([float(train[i][0]) for i in train_rows if train[i][0] != "?"])
    assert ds.provenance["imputed_median"]["age"] == np.median(ages)  # training rows only, not the whole file
    cont = ds.splits["train"].cont
    indicator = cont[:, 2]
    assert indicator.sum().item() == len(train_rows) - len(ages) == ds.provenance["missing"]["age"]["train"]
    expected = (np.median(ages) - ages.mean()) / ages.std()  # standardised with the observed training values
    assert np.allclose(cont[indicator == 1, 0].numpy(), expected, atol=1e-5)
    assert np.allclose(
        np.sort(cont[indicator == 0, 0].numpy()), np.sort((ages - ages.mean()) / ages.std()), atol=1e-5
    )


def test_a_missing_category_is_its_own_category(adult: tuple) -> None:
    path, _, _ = adult
    ds = load_user_dataset(path)
    codes = ds.splits["train"].cat[:, 0]
    assert len(set(codes.tolist())) == 4  # Private, State-gov, Self-emp, <missing>
    assert 0 not in codes.tolist()  # <missing> was seen in training: not "unknown"


def test_gzip_and_parquet_read_the_same_dataset(adult: tuple, tmp_path: Path) -> None:
    path, train, test = adult
    plain = load_user_dataset(path, use_cache=False)
    write(tmp_path / "adult.data.gz", train)
    write(tmp_path / "adult.test.gz", test, banner=True)
    gz = load_user_dataset(
        declare(tmp_path, {**ADULT, "files": {"train": "adult.data.gz", "test": "adult.test.gz"}})
    )
    for frame, name in ((train, "train.parquet"), (test, "test.parquet")):
        pd.DataFrame(frame, columns=COLUMNS).to_parquet(tmp_path / name)
    body = {k: v for k, v in ADULT.items() if k not in ("columns", "comment")}
    pq = load_user_dataset(
        declare(tmp_path, {**body, "files": {"train": "train.parquet", "test": "test.parquet"}})
    )
    for other in (gz, pq):
        for s in ("train", "valid", "test"):
            assert np.allclose(other.splits[s].cont.numpy(), plain.splits[s].cont.numpy())
            assert (other.splits[s].cat == plain.splits[s].cat).all()
            assert (other.splits[s].y == plain.splits[s].y).all()


def error(tmp_path: Path, body: dict) -> str:
    with pytest.raises(DataError) as err:
        load_user_dataset(declare(tmp_path, body), use_cache=False)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_a_header_less_file_without_columns_is_refused_not_robbed_of_its_first_row(
    adult: tuple, tmp_path: Path
) -> None:
    body = {k: v for k, v in ADULT.items() if k != "columns"}
    msg = error(tmp_path, body)
    assert msg.startswith(f"{tmp_path / 'adult.data'}: line 1 looks like data, not a header (")
    assert "name the columns with `columns:`" in msg


def test_columns_for_a_file_that_has_a_header_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "adult.data", rows(50, 0), header=True)
    write(tmp_path / "adult.test", rows(50, 1, "."), header=True)
    msg = error(tmp_path, ADULT)
    assert msg.endswith(
        "adult.data: line 1 repeats the names given in `columns`: the file has a header row; remove `columns`, "
        "or declare `header: true` to rename its columns"
    )


def test_a_banner_without_comment_is_named_with_the_fix(tmp_path: Path) -> None:
    write(tmp_path / "adult.data", rows(50, 0), header=True)
    write(tmp_path / "adult.test", rows(50, 1, "."), header=True, banner=True)
    body = {k: v for k, v in ADULT.items() if k not in ("columns", "comment")}
    msg = error(tmp_path, body)
    assert "adult.test: the header has 1 fields but the data rows have more; " in msg
    assert f"its line 1 reads {BANNER!r}: if that is a banner, not the header, declare `comment:`" in msg
    with_comment = load_user_dataset(declare(tmp_path, {**body, "comment": "|"}))
    assert len(with_comment.splits["test"]) == 50


def test_differently_spelled_test_labels_fail_naming_task_split_and_fix(adult: tuple, tmp_path: Path) -> None:
    body = {k: v for k, v in ADULT.items() if k != "label_suffix"}
    msg = error(tmp_path, body)
    assert msg.startswith(
        f"{tmp_path / 'adult.test'}: task 'rich' (income == '>50K') has a single class in the test split (0 of 200"
    )
    assert "adult.test spells its labels ['<=50K.', '>50K.'], adult.data ['<=50K', '>50K']" in msg
    assert msg.endswith("set `label_suffix: '.'` in the dataset YAML")


def test_a_label_value_only_one_file_has_is_reported(tmp_path: Path) -> None:
    train, test = rows(300, 0), rows(100, 1)
    for r in test[:10]:
        r[3] = "unknown"
    write(tmp_path / "adult.data", train)
    write(tmp_path / "adult.test", test)
    ds = load_user_dataset(declare(tmp_path, ADULT))
    assert ds.provenance["warnings"] == [
        "task 'rich': label values ['unknown'] appear in adult.test (test) but not in adult.data "
        "(which has ['<=50K', '>50K'])"
    ]


def test_missing_values_need_na_values(adult: tuple, tmp_path: Path) -> None:
    body = {k: v for k, v in ADULT.items() if k != "na_values"}
    msg = error(tmp_path, body)
    # the first "?" age is data row 3 of adult.data: line 4 of the header-less file
    assert msg.endswith(
        "adult.data: line 4: column 'age': expected a number, got '?' (if it means a missing value, list it in `na_values`)"
    )


def test_line_numbers_count_comments_and_blank_lines(tmp_path: Path) -> None:
    body = rows(30, 0, missing=False)
    body[12][2] = "forty"
    text = "| banner\n\n" + "\n".join(", ".join(r) for r in body[:5]) + "\n| mid-file note\n\n"
    text += "\n".join(", ".join(r) for r in body[5:]) + "\n"
    (tmp_path / "adult.data").write_text(text)
    write(tmp_path / "adult.test", rows(30, 1, "."))
    msg = error(tmp_path, ADULT)
    # 2 lines before the first row, rows 0-4 on lines 3-7, 2 more skipped lines, row 12 on line 17
    assert msg.endswith(
        "adult.data: line 17: column 'hours': expected a number, got 'forty' (if it means a missing value, list it in `na_values`)"
    )


def test_a_missing_label_is_never_imputed(tmp_path: Path) -> None:
    train = rows(60, 0)
    train[20][3] = "?"
    write(tmp_path / "adult.data", train)
    write(tmp_path / "adult.test", rows(60, 1, "."))
    msg = error(tmp_path, ADULT)
    assert msg.endswith(
        "adult.data: line 21: task 'rich': label column 'income' is missing (1 rows in this file); a label cannot be imputed"
    )


def test_columns_must_match_the_fields(tmp_path: Path) -> None:
    write(tmp_path / "adult.data", rows(20, 0))
    write(tmp_path / "adult.test", rows(20, 1, "."))
    msg = error(tmp_path, {**ADULT, "columns": COLUMNS[:3]})
    assert msg.endswith("adult.data: the first data row has 4 fields but `columns` names 3")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"split": {"valid": 0.1, "test": 0.2}}, "split.test does not apply: `files.test` is the test split"),
        (
            {"files": {"train": "a", "valid": "b", "test": "c"}, "split": {"valid": 0.1}},
            "`split` does not apply",
        ),
        ({"columns": ["a", "b", "a"]}, "`columns` names ['a'] more than once"),
        ({"comment": ""}, "comment: String should have at least 1 character"),
    ],
)
def test_declaration_mistakes(tmp_path: Path, change: dict, expected: str) -> None:
    assert expected in error(tmp_path, {**ADULT, **change})


def test_a_prepared_dataset_is_cached_until_a_file_changes(adult: tuple, tmp_path: Path) -> None:
    path, train, _ = adult
    first = load_user_dataset(path)
    again = load_user_dataset(path)
    assert (first.splits["train"].cont == again.splits["train"].cont).all()
    train[0][2] = "99"
    write(tmp_path / "adult.data", train)
    changed = load_user_dataset(path)
    assert not (changed.splits["train"].cont == first.splits["train"].cont).all()


def test_files_with_different_columns_say_which(tmp_path: Path) -> None:
    write(tmp_path / "adult.data", rows(50, 0), header=True)
    lines = write(tmp_path / "adult.test", rows(50, 1, "."), header=True).read_text().splitlines()
    lines[0] = lines[0].replace("income", "salary")
    (tmp_path / "adult.test").write_text("\n".join(lines) + "\n")
    body = {k: v for k, v in ADULT.items() if k not in ("columns", "comment")}
    msg = error(tmp_path, body)
    assert msg.endswith("adult.test: columns differ from the training file adult.data: lacks ['income']")


def test_a_train_and_test_pair_without_any_split_loads_with_the_default_validation_share(
    tmp_path: Path,
) -> None:
    """No `split` at all: the default (a tenth of the training file for validation) is not something the user
    gave, so it is never refused as not applying."""
    write(tmp_path / "adult.data", rows(400, 0))
    write(tmp_path / "adult.test", rows(200, 1, suffix="."), banner=True)
    body = {k: v for k, v in ADULT.items() if k != "split"}
    ds = load_user_dataset(declare(tmp_path, body), use_cache=False)
    assert len(ds.splits["valid"].y) == 40 and len(ds.splits["test"].y) == 200


def _field_id_file(path: Path, n: int = 300) -> Path:
    """A recommender log as such datasets are published: labels first, then feature fields named by numbers."""
    rng = np.random.default_rng(0)
    lines = ["click,purchase,101,121,122"]
    for _ in range(n):
        click = int(rng.random() < 0.3)
        lines.append(
            f"{click},{click * int(rng.random() < 0.4)},{rng.integers(0, 50)},{rng.integers(0, 9)},{rng.random():.3f}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_header_of_numeric_field_names_reads_with_header_true(tmp_path: Path) -> None:
    """Line 1 `click,purchase,101,121,122` looks like data to the guess; `header: true` says it is the header,
    and `columns:` may list numbers unquoted (or rename the columns, with `header: true`)."""
    _field_id_file(tmp_path / "log.csv")
    body = {
        "name": "log",
        "file": "log.csv",
        "categorical": [101, 121],
        "continuous": [122],
        "tasks": [{"name": "click", "column": "click", "kind": "binary", "equals": 1}],
        "ignore": ["purchase"],
    }
    msg = error(tmp_path, body)
    assert "looks like data, not a header" in msg and "header: true" in msg
    ds = load_user_dataset(declare(tmp_path, {**body, "header": True}), use_cache=False)
    assert sum(len(s.y) for s in ds.splits.values()) == 300  # no row lost to the header, none read as data
    renamed = {**body, "header": True, "columns": ["click", "purchase", 101, 121, 122]}
    assert load_user_dataset(declare(tmp_path, renamed), use_cache=False).spec.n_continuous == 1
    assert "`columns`" in error(tmp_path, {**body, "header": False})


def test_a_task_defined_only_after_another_and_missing_labels_as_undefined(tmp_path: Path) -> None:
    """`on: {task: click, equals: 1}`: purchase is undefined (NaN) where there was no click; `missing: undefined`:
    an empty label cell is undefined, not an error; `hpo data info` prints the rows where each is defined."""
    from hpo.data.checks import summary_lines

    path = _field_id_file(tmp_path / "log.csv", n=400)
    text = path.read_text().splitlines()
    text[5] = ",".join(["", *text[5].split(",")[1:]])  # one click label left empty
    path.write_text("\n".join(text) + "\n")
    body = {
        "name": "log",
        "file": "log.csv",
        "header": True,
        "categorical": [101, 121],
        "continuous": [122],
        "na_values": [],
        "tasks": [
            {"name": "click", "column": "click", "kind": "binary", "equals": 1, "missing": "undefined"},
            {
                "name": "purchase",
                "column": "purchase",
                "kind": "binary",
                "equals": 1,
                "on": {"task": "click"},
            },
        ],
    }
    ds = load_user_dataset(declare(tmp_path, body), use_cache=False)
    y = torch.cat([s.y for s in ds.splits.values()])
    assert int(torch.isnan(y[:, 0]).sum()) == 1
    assert torch.isnan(y[:, 1][y[:, 0] != 1]).all() and not torch.isnan(y[:, 1][y[:, 0] == 1]).any()
    lines = summary_lines(ds.info())
    assert sum("defined on a subset of rows" in line for line in lines) == 2, lines
    bad = {**body, "tasks": [body["tasks"][1], body["tasks"][0]]}
    assert "on.task must name an earlier task" in error(tmp_path, bad)
    assert "a label cannot be imputed" in error(
        tmp_path, {**body, "tasks": [{**body["tasks"][0], "missing": "error"}]}
    )
