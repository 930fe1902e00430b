"""Users' own tables, declared in YAML: how a table we have never seen becomes a multi-task dataset.

.. code-block:: yaml

    name: churn
    file: customers.csv            # CSV or Parquet; or `files: {train: a.csv, valid: b.csv, test: c.csv}`
    continuous: [age, spend]       # optional: omit both lists to infer (the inference is reported)
    categorical: [city, plan]
    ignore: [customer_id]
    tasks:
      - {name: churned, column: status, kind: binary, equals: "left"}
      - {name: premium, column: plan, kind: binary, in: [gold, platinum]}
      - {name: big_spender, column: spend, kind: binary, above: 100}
      - {name: spend, column: spend, kind: regression}
    split: {valid: 0.1, test: 0.1, seed: 0}   # used with a single file
    scaling: standard                          # or none

Paths are relative to the YAML file. A task's label column is removed from the inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hpo.config.yamlio import format_validation_error
from hpo.config.yamlio import read_yaml as _read_yaml
from hpo.data._cache import file_sha256
from hpo.data._tabular import SPLITS, Split, TabularDataset, fit_encoder, numeric_column, split_indices
from hpo.errors import DataError
from hpo.schema import TaskSpec

__all__ = ["UserDatasetSpec", "load_user_dataset", "read_yaml"]

INFER_MAX_CATEGORIES = 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TaskRule(_Strict):
    name: str
    column: str
    kind: Literal["binary", "regression"] = "binary"
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    above: float | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> TaskRule:
        rules = [r for r in ("equals", "in_", "above") if getattr(self, r) is not None]
        if self.kind == "binary" and len(rules) != 1:
            raise ValueError(f"binary task {self.name!r} needs exactly one of: equals, in, above")
        if self.kind == "regression" and rules:
            raise ValueError(f"regression task {self.name!r} takes the column as is: remove {rules}")
        return self

    def describe(self) -> str:
        if self.kind == "regression":
            return f"{self.column} (numeric)"
        if self.equals is not None:
            return f"{self.column} == {self.equals!r}"
        if self.in_ is not None:
            return f"{self.column} in {self.in_!r}"
        return f"{self.column} > {self.above}"


class SplitOptions(_Strict):
    valid: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _leaves_training(self) -> SplitOptions:
        if self.valid + self.test >= 1:
            raise ValueError(f"valid + test must be < 1, got {self.valid} + {self.test}")
        return self


class SplitFiles(_Strict):
    train: str
    valid: str
    test: str


class UserDatasetSpec(_Strict):
    name: str
    file: str | None = None
    files: SplitFiles | None = None
    continuous: list[str] | None = None
    categorical: list[str] | None = None
    ignore: list[str] = Field(default_factory=list)
    tasks: list[TaskRule] = Field(min_length=1)
    split: SplitOptions = Field(default_factory=lambda: SplitOptions(valid=0.1, test=0.1))
    scaling: Literal["standard", "none"] = "standard"

    @model_validator(mode="after")
    def _one_source(self) -> UserDatasetSpec:
        if (self.file is None) == (self.files is None):
            raise ValueError("give either `file` (one table, split by `split`) or `files` (train/valid/test)")
        return self


def read_yaml(path: Path) -> dict[str, Any]:
    return _read_yaml(path, DataError)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, skipinitialspace=True, engine="c")
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"{path}: rows do not all have the header's number of columns ({detail})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as a table ({exc})") from None


def _label(df: pd.DataFrame, rule: TaskRule, source: str) -> np.ndarray:
    if rule.column not in df.columns:
        raise DataError(
            f"{source}: task {rule.name!r}: column {rule.column!r} not found; columns: {list(df.columns)}"
        )
    col = df[rule.column]
    if rule.kind == "regression":
        return numeric_column(df, rule.column, source).astype(np.float32)
    if rule.equals is not None:
        y = (col.astype(str) == str(rule.equals)).to_numpy()
    elif rule.in_ is not None:
        y = col.astype(str).isin([str(v) for v in rule.in_]).to_numpy()
    else:
        assert rule.above is not None
        y = numeric_column(df, rule.column, source) > rule.above
    return y.astype(np.float32)


def _infer_columns(df: pd.DataFrame, exclude: set[str]) -> tuple[list[str], list[str], list[str]]:
    """Numeric columns with more than 20 distinct values are continuous; everything else is categorical."""
    cont, cat, notes = [], [], []
    for c in df.columns:
        if c in exclude:
            continue
        numeric = pd.api.types.is_numeric_dtype(df[c])
        distinct = int(df[c].nunique())
        if numeric and distinct > INFER_MAX_CATEGORIES:
            cont.append(c)
            notes.append(f"{c}: continuous (numeric, {distinct} distinct values)")
        else:
            cat.append(c)
            why = "numeric" if numeric else "text"
            notes.append(f"{c}: categorical ({why}, {distinct} distinct values)")
    return cont, cat, notes


def _read_frames(
    spec: UserDatasetSpec, base: Path
) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, Path]]:
    """The three splits' rows, the file each came from, and the files read (for checksums)."""
    if spec.file is not None:
        table_path = base / spec.file
        df = _read_table(table_path)
        if len(df) == 0:
            raise DataError(f"{table_path}: the table has no rows")
        fractions = [1 - spec.split.valid - spec.split.test, spec.split.valid, spec.split.test]
        parts = split_indices(len(df), fractions, spec.split.seed)
        frames = {s: df.iloc[idx] for s, idx in zip(SPLITS, parts, strict=True)}
        return frames, dict.fromkeys(SPLITS, str(table_path)), {"table": table_path}
    assert spec.files is not None
    files = {s: base / getattr(spec.files, s) for s in SPLITS}
    frames = {s: _read_table(p) for s, p in files.items()}
    cols = list(frames["train"].columns)
    for s in ("valid", "test"):
        if list(frames[s].columns) != cols:
            raise DataError(
                f"{files[s]}: columns {list(frames[s].columns)} differ from the training file's {cols}"
            )
    return frames, {s: str(p) for s, p in files.items()}, files


def _input_columns(
    spec: UserDatasetSpec, train: pd.DataFrame, path: Path, source: str
) -> tuple[list[str], list[str], list[str]]:
    """Continuous and categorical input columns (declared or inferred), and the inference notes."""
    label_cols = {t.column for t in spec.tasks}
    declared = set(spec.continuous or []) | set(spec.categorical or [])
    for c in sorted(declared | set(spec.ignore)):
        if c not in train.columns:
            raise DataError(f"{path}: column {c!r} not found in {source}; columns: {list(train.columns)}")
    notes: list[str] = []
    if spec.continuous is None and spec.categorical is None:
        cont, cat, notes = _infer_columns(train, label_cols | set(spec.ignore))
    else:
        cont = [c for c in (spec.continuous or []) if c not in label_cols]
        cat = [c for c in (spec.categorical or []) if c not in label_cols]
    if not cont and not cat:
        raise DataError(f"{path}: no input columns left after removing labels and `ignore`")
    return cont, cat, notes


def _check_both_classes(spec: UserDatasetSpec, train: Split, source: str) -> None:
    for k, t in enumerate(spec.tasks):
        if t.kind == "binary":
            classes = np.unique(train.y[:, k].numpy())
            if len(classes) < 2:
                raise DataError(
                    f"{source}: task {t.name!r} ({t.describe()}) has a single class "
                    f"({int(classes[0])}) in the training rows; a binary task needs both"
                )


def load_user_dataset(path: str | Path) -> TabularDataset:
    """Read a dataset declaration and the table(s) it names; every mistake is one :class:`DataError` line."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        spec = UserDatasetSpec.model_validate(raw)
    except ValidationError as exc:
        raise DataError(format_validation_error(str(path), exc)) from None
    frames, sources, files = _read_frames(spec, path.parent)
    for s, f in frames.items():
        if len(f) == 0:
            raise DataError(f"{sources[s]}: split {s!r} is empty; give it rows or change `split`")
    cont, cat, notes = _input_columns(spec, frames["train"], path, sources["train"])
    enc = fit_encoder(frames["train"], cont, cat, sources["train"], spec.scaling)
    splits = {}
    for s, f in frames.items():
        x_cont, x_cat = enc.encode(f, sources[s])
        y = np.stack([_label(f, t, sources[s]) for t in spec.tasks], axis=1)
        splits[s] = Split(x_cont, x_cat, torch.from_numpy(y))
    _check_both_classes(spec, splits["train"], sources["train"])
    provenance = {
        "dataset": spec.name,
        "declaration": str(path),
        "files": {k: {"path": str(p), "sha256": file_sha256(p)} for k, p in files.items()},
        "labels": {t.name: t.describe() for t in spec.tasks},
        "split": spec.split.model_dump() if spec.file else "files",
        "column_inference": notes,
    }
    tasks = tuple(TaskSpec(t.name, t.kind) for t in spec.tasks)
    return TabularDataset(spec.name, enc.spec, tasks, splits, tuple(cont), tuple(cat), provenance)
