"""Users' own tables, declared in YAML: how a table we have never seen becomes a multi-task dataset.

.. code-block:: yaml

    name: adult
    files: {train: adult.data, test: adult.test}   # or `file: one.csv` (split by `split`); CSV, .csv.gz, Parquet
    columns: [age, workclass, fnlwgt, ...]         # the files have no header row: these are the names
    comment: "|"                                   # skip lines starting with "|" (a banner line)
    na_values: ["?"]                               # also missing: "?" (empty cells always are)
    label_suffix: "."                              # the test file writes ">50K." for ">50K"
    continuous: [age, fnlwgt]                      # optional: omit both lists to infer (the inference is reported)
    categorical: [workclass, education]
    ignore: [customer_id]
    tasks:
      - {name: income, column: income, kind: binary, equals: ">50K"}
      - {name: premium, column: plan, kind: binary, in: [gold, platinum]}
      - {name: big_spender, column: spend, kind: binary, above: 100}
      - {name: spend, column: spend, kind: regression}
    split: {valid: 0.1, seed: 0}       # with `files` lacking `valid`: validation rows carved from the training file
    scaling: standard                  # or none

Paths are relative to the YAML file. A task's label column is removed from the inputs. Prepared datasets are
cached like census-income's (keyed by the declaration and the files' hashes), so ``hpo validate`` and every worker
load them once. Before any training, every split must have both classes of every binary task (a spread, for a
regression task); a label value seen in one file and not in another is reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpo.data._cache import cache_key, file_sha256, load_cached, save_cached
from hpo.data._tabular import SPLITS, Split, TabularDataset, split_indices
from hpo.data.checks import label_spellings, split_problems
from hpo.data.columns import (
    Fitted,
    Part,
    category_codes,
    encode_categorical,
    encode_continuous,
    normalise_label,
    numbers,
)
from hpo.data.sparse import SparseRule, SparseStats, encode_sparse
from hpo.data.tables import ReadOptions, Table, read_table, same_columns
from hpo.errors import DataError
from hpo.schema import InputSpec, TaskSpec
from hpo.yamlio import format_validation_error
from hpo.yamlio import read_yaml as _read_yaml

__all__ = ["UserDatasetSpec", "load_user_dataset", "read_yaml"]

INFER_MAX_CATEGORIES = 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TaskCondition(_Strict):
    """``on: {task: NAME, equals: V}``: a task defined only on the rows where an earlier task's label is V."""

    task: str
    equals: float = 1.0


def _name(value: Any) -> Any:
    """A column name written as a number in YAML, as the text it is in the file's header."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class TaskRule(_Strict):
    name: str
    column: str

    @field_validator("column", mode="before")
    @classmethod
    def _column_as_text(cls, v: Any) -> Any:
        return _name(v)

    kind: Literal["binary", "regression"] = "binary"
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    above: float | None = None
    # where the task is defined: everywhere (default), only where an earlier task's label equals a value
    # (a conversion only after a click: `on: {task: click, equals: 1}`), and/or wherever its label is present
    # (`missing: undefined`); undefined rows count in neither its loss nor its metrics
    on: TaskCondition | None = None
    missing: Literal["error", "undefined"] = "error"

    @model_validator(mode="after")
    def _one_rule(self) -> TaskRule:
        rules = [r for r in ("equals", "in_", "above") if getattr(self, r) is not None]
        if self.kind == "binary" and len(rules) != 1:
            raise ValueError(f"binary task {self.name!r} needs exactly one of: equals, in, above")
        if self.kind == "regression" and rules:
            raise ValueError(f"regression task {self.name!r} takes the column as is: remove {rules}")
        return self

    @property
    def by_value(self) -> bool:
        """Matched against label values (``equals``/``in``), not compared as a number."""
        return self.kind == "binary" and self.above is None

    def describe(self) -> str:
        if self.kind == "regression":
            return f"{self.column} (numeric)"
        if self.equals is not None:
            return f"{self.column} == {self.equals!r}"
        if self.in_ is not None:
            return f"{self.column} in {self.in_!r}"
        return f"{self.column} > {self.above}"


class SparseColumn(_Strict):
    """A sparse (embedded) input column: ``{name: item_id, min_count: 5}``, or just its name."""

    name: str
    min_count: int = Field(
        1, ge=1
    )  # values seen fewer times in the training rows share the out-of-vocabulary row
    hash_buckets: int | None = Field(None, ge=2)  # hash values into this many rows instead of a vocabulary
    separator: str | None = Field(None, min_length=1)  # a cell holds a list of values split by this
    max_values: int | None = Field(None, ge=1)  # a list's values kept (default: the longest training list)
    pooling: Literal["sum", "mean"] = "sum"  # how a list's embeddings combine
    dim: int | None = Field(None, ge=1)  # this field's embedding width (default: the study's field_dim)

    @field_validator("name", mode="before")
    @classmethod
    def _name_as_text(cls, v: Any) -> Any:
        return _name(v)

    @model_validator(mode="after")
    def _hash_or_vocabulary(self) -> SparseColumn:
        if self.hash_buckets is not None and "min_count" in self.model_fields_set:
            raise ValueError(
                f"sparse field {self.name!r}: min_count applies to a vocabulary, not to hash_buckets"
            )
        if self.separator is None and (
            "max_values" in self.model_fields_set or "pooling" in self.model_fields_set
        ):
            raise ValueError(
                f"sparse field {self.name!r}: max_values and pooling need a separator (a list per cell)"
            )
        return self

    def rule(self) -> SparseRule:
        return SparseRule(**self.model_dump())


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
    valid: str | None = None
    test: str


class UserDatasetSpec(_Strict):
    name: str
    file: str | None = None
    files: SplitFiles | None = None
    columns: list[str] | None = Field(None, min_length=1)
    header: bool | None = (
        None  # line 1 names the columns (true) or is data (false); unset: guessed and checked
    )
    comment: str | None = Field(None, min_length=1)
    na_values: list[str] | None = None
    label_suffix: str | None = Field(None, min_length=1)
    continuous: list[str] | None = None
    categorical: list[str] | None = None
    sparse: list[SparseColumn] = Field(default_factory=list)  # ID fields read through embedding tables
    ignore: list[str] = Field(default_factory=list)
    tasks: list[TaskRule] = Field(min_length=1)
    split: SplitOptions = Field(
        default_factory=SplitOptions
    )  # nothing set: only what a user writes is "given"
    scaling: Literal["standard", "none"] = "standard"

    @field_validator("columns", "continuous", "categorical", "ignore", mode="before")
    @classmethod
    def _names_as_text(cls, v: Any) -> Any:
        """Feature-field IDs (``101``, ``121``) are names too: an unquoted number in YAML is read as its text."""
        return [_name(c) for c in v] if isinstance(v, list) else v

    @field_validator("sparse", mode="before")
    @classmethod
    def _sparse_names(cls, v: Any) -> Any:
        """``sparse: [user_id, 101]`` is a list of names with the default settings."""
        return [c if isinstance(c, dict) else {"name": c} for c in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _one_source(self) -> UserDatasetSpec:
        if (self.file is None) == (self.files is None):
            raise ValueError(
                "give either `file` (one table, split by `split`) or `files` (train/test, and valid)"
            )
        if self.files is not None and self.files.valid is not None and "split" in self.model_fields_set:
            raise ValueError("`split` does not apply: `files` names the train, valid and test files")
        if self.files is not None and self.files.valid is None and "test" in self.split.model_fields_set:
            raise ValueError(
                "split.test does not apply: `files.test` is the test split (give split.valid only)"
            )
        names = [t.name for t in self.tasks]
        for k, t in enumerate(self.tasks):
            if t.on is not None and t.on.task not in names[:k]:
                raise ValueError(
                    f"task {t.name!r}: on.task must name an earlier task (one of {names[:k]}), got {t.on.task!r}"
                )
        if self.header is False and self.columns is None:
            raise ValueError(
                "header: false says the files have no header row: name the columns with `columns`"
            )
        sparse = [f.name for f in self.sparse]
        for kind in ("continuous", "categorical", "ignore"):
            if both := sorted(set(sparse) & set(getattr(self, kind) or [])):
                raise ValueError(f"{both} listed in both `sparse` and `{kind}`: a column has one kind")
        if both := sorted(set(sparse) & {t.column for t in self.tasks}):
            raise ValueError(f"{both} listed in `sparse` is a task's label column")
        if len(set(sparse)) != len(sparse):
            raise ValueError(
                f"`sparse` names {sorted({c for c in sparse if sparse.count(c) > 1})} more than once"
            )
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            dup = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise ValueError(f"`columns` names {dup} more than once")
        return self

    def read_options(self) -> ReadOptions:
        """Which columns to keep, and which to parse as numbers (declared continuous inputs and numeric labels;
        the rest are read as categoricals); with nothing declared, every column is kept and kinds are inferred."""
        numeric = set(self.continuous or []) | {t.column for t in self.tasks if not t.by_value}
        categorical = (
            set(self.categorical or [])
            | {f.name for f in self.sparse}
            | {t.column for t in self.tasks if t.by_value}
        ) - numeric
        declared = self.continuous is not None or self.categorical is not None
        usecols = tuple(sorted(numeric | categorical)) if declared else None
        return ReadOptions(
            columns=tuple(self.columns) if self.columns is not None else None,
            header=self.header,
            comment=self.comment,
            na_values=tuple(self.na_values or ()),
            usecols=usecols,
            numeric=tuple(sorted(numeric)) if declared else None,
        )


def read_yaml(path: Path) -> dict[str, Any]:
    return _read_yaml(path, DataError)


def _layout(spec: UserDatasetSpec, base: Path) -> list[Part]:
    """Read the files and decide which rows of which file make each split, training rows first."""
    options = spec.read_options()
    if spec.file is not None:
        table = read_table(base / spec.file, options)
        fractions = [1 - spec.split.valid - spec.split.test, spec.split.valid, spec.split.test]
        return [_carve(table, SPLITS, fractions, spec.split.seed)]
    assert spec.files is not None
    names = {s: getattr(spec.files, s) for s in SPLITS if getattr(spec.files, s) is not None}
    tables = {s: read_table(base / f, options) for s, f in names.items()}
    same_columns(list(tables.values()))
    if spec.files.valid is None:
        fractions = [1 - spec.split.valid, spec.split.valid]
        parts = [_carve(tables["train"], ("train", "valid"), fractions, spec.split.seed)]
    else:
        parts = [_whole(tables["train"], "train"), _whole(tables["valid"], "valid")]
    return [*parts, _whole(tables["test"], "test")]


def _carve(table: Table, splits: tuple[str, ...], fractions: list[float], seed: int) -> Part:
    parts = split_indices(len(table.frame), fractions, seed)
    bounds, start = {}, 0
    for split, rows in zip(splits, parts, strict=True):
        bounds[split] = (start, start + len(rows))
        start += len(rows)
    return Part(table, np.concatenate(parts), bounds)


def _whole(table: Table, split: str) -> Part:
    return Part(table, np.arange(len(table.frame)), {split: (0, len(table.frame))})


def _input_columns(spec: UserDatasetSpec, train: Table) -> tuple[list[str], list[str], list[str], list[str]]:
    """Continuous and categorical input columns (declared or inferred), the sparse ID columns inference found
    (declared sparse fields are never inferred), and the inference notes."""
    label_cols = {t.column for t in spec.tasks}
    sparse = {f.name for f in spec.sparse}
    named = label_cols | set(spec.continuous or []) | set(spec.categorical or []) | set(spec.ignore) | sparse
    for c in sorted(named):
        if c not in train.header:
            task = next((f"task {t.name!r}: label " for t in spec.tasks if t.column == c), "")
            raise DataError(
                f"{train.path}: {task}column {c!r} not found; the file's columns: {list(train.header)}"
                f"{train.banner_hint()}"
            )
    notes: list[str] = []
    ids: list[str] = []
    if spec.continuous is None and spec.categorical is None:
        cont, cat, ids, notes = _infer_columns(train, label_cols | set(spec.ignore) | sparse)
    else:
        cont = [c for c in (spec.continuous or []) if c not in label_cols]
        cat = [c for c in (spec.categorical or []) if c not in label_cols]
    if not cont and not cat and not sparse and not ids:
        raise DataError(f"{train.path}: no input columns left after removing labels and `ignore`")
    return cont, cat, ids, notes


def _id_like(name: str) -> bool:
    """``user_id``, ``itemId``, ``uid``, ``ID``: the names ID fields go by in published logs."""
    lowered = name.lower()
    return lowered in ("id", "uid", "iid") or lowered.endswith(("_id", "-id", " id")) or name.endswith("Id")


def _infer_columns(train: Table, exclude: set[str]) -> tuple[list[str], list[str], list[str], list[str]]:
    """Continuous, categorical and sparse (ID) columns of a table whose declaration lists none, with a note each.

    A number with a fraction is continuous however few its values (a price, a rate); a column named as an ID
    with more than 20 values is a sparse field (embedded, vocabulary from the training rows), whether its values
    are numbers or text: an ID's number is a label, not a quantity; any other column of whole numbers with more
    than 20 values is continuous; the rest (text, and whole numbers with at most 20 values: codes) categorical.
    """
    cont, cat, ids, notes = [], [], [], []
    for c in train.frame.columns:
        if c in exclude:
            continue
        column = train.frame[c]
        numeric = bool(pd.api.types.is_numeric_dtype(column))
        distinct = int(column.nunique())
        values = column.dropna().to_numpy() if numeric else None
        fraction = values is not None and bool((values != np.round(values)).any())
        if _id_like(c) and distinct > INFER_MAX_CATEGORIES and not fraction:
            ids.append(c)
            notes.append(f"{c}: sparse (named as an ID, {distinct} distinct values)")
        elif fraction or (numeric and distinct > INFER_MAX_CATEGORIES):
            cont.append(c)
            why = "numbers with fractions" if fraction else "whole numbers"
            notes.append(f"{c}: continuous ({why}, {distinct} distinct values)")
        else:
            cat.append(c)
            notes.append(f"{c}: categorical ({'numeric' if numeric else 'text'}, {distinct} distinct values)")
    return cont, cat, ids, notes


def _label(part: Part, rule: TaskRule, suffix: str | None) -> tuple[np.ndarray, dict[str, set[str]]]:
    """The task's labels in stored order, and (for value-matched tasks) the label values each split holds."""
    table = part.table
    undefined_ok = rule.missing == "undefined"
    if not rule.by_value:
        values, absent = numbers(table, rule.column, allow_missing=undefined_ok, what="label column")
        y = values if rule.above is None else (values > rule.above).astype(np.float64)
        y = np.where(absent, np.nan, y)
        return y[part.order].astype(np.float32), {}
    codes, names = category_codes(table.frame[rule.column], suffix)
    missing = codes == len(names) - 1
    if missing.any() and not undefined_ok:
        pos = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{table.path}: {table.where(pos)}: task {rule.name!r}: label column {rule.column!r} is missing "
            f"({int(missing.sum())} rows in this file); a label cannot be imputed"
        )
    targets = {normalise_label(v, suffix) for v in (rule.in_ if rule.in_ is not None else [rule.equals])}
    hit = np.array([n in targets for n in names])
    seen = {s: {names[i] for i in np.unique(codes[part.rows(s)]) if i != len(names) - 1} for s in part.bounds}
    return np.where(missing, np.nan, hit[codes])[part.order].astype(np.float32), seen


def _release(parts: list[Part], col: str) -> None:
    """Drop an encoded input column from the frames (inputs never include a label column, and labels are read
    later), so the frames shrink as the arrays fill and the two are never both whole."""
    for part in parts:
        if col in part.table.frame.columns:
            del part.table.frame[col]


def _missing_somewhere(parts: list[Part], col: str) -> bool:
    return any(bool(p.table.frame[col].isna().any()) for p in parts)


def _encode_sparse(
    parts: list[Part], rules: list[SparseRule]
) -> tuple[list[list[np.ndarray]], list[SparseStats]]:
    """Each sparse field's codes per part (released from the frames as they are coded), and what coding found."""
    codes, stats = [], []
    for rule in rules:
        encoded, found = encode_sparse(parts, rule)
        codes.append(encoded)
        stats.append(found)
        _release(parts, rule.name)
    return codes, stats


def _encode(
    spec: UserDatasetSpec,
    parts: list[Part],
    cont: list[str],
    cat: list[str],
    sparse: list[SparseRule],
    fitted: Fitted,
) -> tuple[list[np.ndarray], list[np.ndarray], list[str], tuple[int, ...], list[SparseStats]]:
    """Every part's inputs, filled into one preallocated array per part (no per-column stacking copy): continuous
    values; then codes, the categorical columns' first and every sparse field's slots after them."""
    sparse_codes, stats = _encode_sparse(parts, sparse)
    impute = spec.na_values is not None
    flagged = [c for c in cont if impute and _missing_somewhere(parts, c)]
    width = len(cont) + len(flagged)
    xs = [np.empty((len(p.order), width), dtype=np.float32) for p in parts]
    for j, col in enumerate(cont):
        values, indicators = encode_continuous(
            parts, col, allow_missing=impute, scaling=spec.scaling, fitted=fitted
        )
        for k, x in enumerate(xs):
            x[:, j] = values[k]
            if indicators is not None:
                x[:, len(cont) + flagged.index(col)] = indicators[k]
        _release(parts, col)
    n_codes = len(cat) + sum(st.slots for st in stats)
    codes = [np.empty((len(p.order), n_codes), dtype=np.int64) for p in parts]
    sizes, offset = [], 0
    for j, col in enumerate(cat):
        encoded, size = encode_categorical(parts, col, fitted)
        for k, c in enumerate(codes):
            c[:, j] = encoded[k]
            c[:, j] += offset
        sizes.append(size)
        _release(parts, col)
        offset += size
    column = len(cat)
    for field_codes, st in zip(sparse_codes, stats, strict=True):
        for k, c in enumerate(codes):
            c[:, column : column + st.slots] = field_codes[k]
        field_codes.clear()
        column += st.slots
    return xs, codes, [*cont, *(f"{c} missing" for c in flagged)], tuple(sizes), stats


def _labels(
    spec: UserDatasetSpec, parts: list[Part]
) -> tuple[list[np.ndarray], dict[str, dict[str, tuple[str, set[str]]]]]:
    ys = [np.empty((len(p.order), len(spec.tasks)), dtype=np.float32) for p in parts]
    seen: dict[str, dict[str, tuple[str, set[str]]]] = {}
    index = {t.name: k for k, t in enumerate(spec.tasks)}
    for k, rule in enumerate(spec.tasks):
        for part, y in zip(parts, ys, strict=True):
            y[:, k], values = _label(part, rule, spec.label_suffix)
            if rule.on is not None:  # defined only where the earlier task's label is the given value
                y[y[:, index[rule.on.task]] != rule.on.equals, k] = np.nan
            for split, v in values.items():
                seen.setdefault(rule.name, {})[split] = (part.table.path.name, v)
    return ys, seen


def _splits(
    parts: list[Part], xs: list[np.ndarray], codes: list[np.ndarray], ys: list[np.ndarray]
) -> dict[str, Split]:
    """Each split as slices (views) of its part's arrays."""
    out = {}
    for part, x, c, y in zip(parts, xs, codes, ys, strict=True):
        for split, (a, b) in part.bounds.items():
            out[split] = Split(torch.from_numpy(x[a:b]), torch.from_numpy(c[a:b]), torch.from_numpy(y[a:b]))
    return out


def _check(spec: UserDatasetSpec, ds: TabularDataset, parts: list[Part], hints: dict[str, str]) -> None:
    """Both classes (or a spread) of every task in every split, or one line naming the task, split and file."""
    files = {s: str(p.table.path) for p in parts for s in p.bounds}
    for task, split, message in split_problems(ds):
        rule = next(t for t in spec.tasks if t.name == task)
        raise DataError(f"{files[split]}: task {task!r} ({rule.describe()}) {message}{hints.get(task, '')}")


def _provenance(
    spec: UserDatasetSpec,
    path: Path,
    parts: list[Part],
    notes: list[str],
    fitted: Fitted,
    warnings: list[str],
    hashes: dict[str, str],
) -> dict[str, Any]:
    files = {s: p.table.path for p in parts for s in p.bounds}
    if spec.file is not None:
        split: Any = {**spec.split.model_dump(), "from": spec.file}
    elif spec.files is not None and spec.files.valid is None:
        split = {"valid": spec.split.valid, "seed": spec.split.seed, "from": spec.files.train, "test": "file"}
    else:
        split = "files"
    return {
        "dataset": spec.name,
        "declaration": str(path),
        "files": {str(p): {"path": str(p), "sha256": hashes[str(p)]} for p in dict.fromkeys(files.values())},
        "split_files": {s: str(p) for s, p in files.items()},
        "labels": {t.name: t.describe() for t in spec.tasks},
        "split": split,
        "read": {
            "header": "columns given" if spec.columns else "first line",
            "comment": spec.comment,
            "na_values": spec.na_values,
            "label_suffix": spec.label_suffix,
        },
        "column_inference": notes,
        "missing": fitted.missing,
        "imputed_median": fitted.imputed,
        "warnings": warnings,
    }


def _declaration(path: Path) -> tuple[UserDatasetSpec, dict[str, Any]]:
    raw = read_yaml(path)
    try:
        return UserDatasetSpec.model_validate(raw), raw
    except ValidationError as exc:
        raise DataError(format_validation_error(str(path), exc)) from None


def _source_files(spec: UserDatasetSpec, base: Path) -> list[Path]:
    names = [spec.file] if spec.file is not None else [getattr(spec.files, s) for s in SPLITS]
    paths = [base / n for n in names if n is not None]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p.resolve()}: file not found")
    return paths


def load_user_dataset(path: str | Path, *, use_cache: bool = True) -> TabularDataset:
    """Read a dataset declaration and the table(s) it names; every mistake is one :class:`DataError` line."""
    path = Path(path)
    spec, raw = _declaration(path)
    files = _source_files(spec, path.parent)
    hashes = {str(p): file_sha256(p) for p in files}
    key = cache_key("user-table", hashes, {"declaration": raw})
    if use_cache and (cached := load_cached(key)) is not None:
        return cached
    parts = _layout(spec, path.parent)
    for part in parts:
        for split, (start, stop) in part.bounds.items():
            if start == stop:
                raise DataError(
                    f"{part.table.path}: split {split!r} is empty; give it rows or change `split`"
                )
    cont, cat, ids, notes = _input_columns(spec, parts[0].table)
    rules = [f.rule() for f in spec.sparse] + [SparseRule(c) for c in ids]
    fitted = Fitted()
    xs, codes, cont_names, sizes, sparse = _encode(spec, parts, cont, cat, rules, fitted)
    ys, seen = _labels(spec, parts)
    warnings, hints = label_spellings(seen, spec.label_suffix)
    splits = _splits(parts, xs, codes, ys)
    tasks = tuple(TaskSpec(t.name, t.kind) for t in spec.tasks)
    provenance = _provenance(spec, path, parts, notes, fitted, warnings, hashes)
    provenance["sparse_fields"] = [st.summary() for st in sparse]
    input_spec = InputSpec(len(cont_names), sizes, tuple(st.spec() for st in sparse))
    ds = TabularDataset(spec.name, input_spec, tasks, splits, tuple(cont_names), tuple(cat), provenance)
    _check(spec, ds, parts, hints)
    if use_cache:
        save_cached(key, ds)
    return ds
