"""A user's columns as model inputs and labels: numbers, categories, missing values and label matching.

Everything fitted (scaling, the imputed value, vocabularies) is fitted on the training rows only. Each file is
encoded once, column by column, into arrays whose rows are already in split order (training rows first), so a
split is a slice of them, not a copy: loading holds the pandas frame and the encoded arrays, never a third copy.

Missing values (empty cells, pandas' usual spellings such as ``NA``, and the dataset's ``na_values``):

* a categorical input's missing value is its own category, ``<missing>``;
* a continuous input's missing value is an error unless the dataset declares ``na_values`` (then missing values are
  expected): it is imputed with the training rows' median and an indicator column ``<column> missing`` (0/1) is
  added, for every column that has a missing value in any file;
* a label is never imputed: a missing label is an error naming its line.

Label values are compared after collapsing whitespace (``" yes "`` is ``"yes"``) and, when the dataset sets
``label_suffix``, after removing that suffix (UCI's test files write ``>50K.`` where the training file has
``>50K``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hpo.data._tabular import _show
from hpo.data.tables import MISSING, Table
from hpo.errors import DataError

__all__ = ["Part", "category_codes", "encode_categorical", "encode_continuous", "normalise_label", "numbers"]


@dataclass
class Part:
    """One file's rows in stored order (``order`` indexes ``table.frame``), split ``s`` being
    ``order[bounds[s][0]:bounds[s][1]]``."""

    table: Table
    order: np.ndarray
    bounds: dict[str, tuple[int, int]]

    def rows(self, split: str) -> np.ndarray:
        start, stop = self.bounds[split]
        return self.order[start:stop]


@dataclass
class Fitted:
    """What the continuous and categorical encoders learned from the training rows (for the provenance)."""

    imputed: dict[str, float] = field(default_factory=dict)
    missing: dict[str, dict[str, int]] = field(default_factory=dict)


def numbers(table: Table, col: str, *, allow_missing: bool, what: str) -> tuple[np.ndarray, np.ndarray]:
    """A column as float64 with NaN where missing, and the missing mask; a non-number, an infinity or (unless
    ``allow_missing``) a missing value is one error naming the file line."""
    raw = table.frame[col]
    missing = raw.isna().to_numpy()
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = (np.isnan(values) & ~missing) | np.isinf(values)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{table.path}: {table.where(pos)}: {what} {col!r}: expected a number, got {_show(raw.iloc[pos])} "
            "(if it means a missing value, list it in `na_values`)"
        )
    if missing.any() and not allow_missing:
        pos = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{table.path}: {table.where(pos)}: {what} {col!r} is missing ({int(missing.sum())} missing in this "
            "file); "
            + (
                "a label cannot be imputed"
                if what.startswith("label")
                else "declare `na_values:` to impute missing numbers from the training rows"
            )
        )
    return values, missing


def encode_continuous(
    parts: Sequence[Part], col: str, *, allow_missing: bool, scaling: str, fitted: Fitted
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Column ``col`` of every part, standardised (or not) with training statistics, missing values imputed with
    the training median; and the 0/1 indicator columns when any part has a missing value."""
    columns = [numbers(p.table, col, allow_missing=allow_missing, what="column") for p in parts]
    train = parts[0]
    train_values = columns[0][0][train.rows("train")]
    observed = train_values[~np.isnan(train_values)]
    if observed.size == 0:
        raise DataError(f"{train.table.path}: column {col!r} has no value in the training rows")
    median = float(np.median(observed))
    mean, std = (float(observed.mean()), float(observed.std())) if scaling == "standard" else (0.0, 1.0)
    std = std if std > 0 else 1.0
    any_missing = any(m.any() for _, m in columns)
    out, indicators = [], []
    for part, (values, missing) in zip(parts, columns, strict=True):
        filled = values[part.order]  # in place from here on: one temporary column, not four
        flags = missing[part.order]
        filled[flags] = median
        filled -= mean
        filled /= std
        out.append(filled.astype(np.float32))
        indicators.append(flags.astype(np.float32))
        _count_missing(fitted, col, part, missing)
    if any_missing:
        fitted.imputed[col] = median
        return out, indicators
    return out, None


def _count_missing(fitted: Fitted, col: str, part: Part, missing: np.ndarray) -> None:
    for split in part.bounds:
        count = int(missing[part.rows(split)].sum())
        if count:
            fitted.missing.setdefault(col, {})[split] = count


def normalise_label(value: object, suffix: str | None = None) -> str:
    """``" yes. "`` -> ``"yes."``; with ``suffix="."``, ``"yes"``."""
    text = " ".join(str(value).split())
    if suffix and text.endswith(suffix):
        text = text[: -len(suffix)].rstrip()
    return text


def category_codes(series: pd.Series, suffix: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Each row's index into a list of distinct (normalised) strings; a missing value is ``<missing>``.

    Works on pandas categoricals, so 10 million rows of a column with 40 values cost 10 million small codes."""
    cats = series if isinstance(series.dtype, pd.CategoricalDtype) else series.astype("category")
    names = [normalise_label(c, suffix) for c in cats.cat.categories] + [MISSING]
    codes = cats.cat.codes.to_numpy().astype(np.int32)
    codes[codes < 0] = len(names) - 1
    return codes, names


def encode_categorical(parts: Sequence[Part], col: str, fitted: Fitted) -> tuple[list[np.ndarray], int]:
    """Column ``col`` of every part as 1-based vocabulary codes (0 = a value not seen in the training rows), and
    the vocabulary's size plus one."""
    coded = [category_codes(p.table.frame[col]) for p in parts]
    codes, names = coded[0]
    vocabulary = sorted({names[i] for i in np.unique(codes[parts[0].rows("train")])})
    index = {v: k + 1 for k, v in enumerate(vocabulary)}
    out = []
    for part, (c, n) in zip(parts, coded, strict=True):
        lookup = np.array([index.get(name, 0) for name in n], dtype=np.int32)
        out.append(lookup[c[part.order]])
        _count_missing(fitted, col, part, c == len(n) - 1)
    return out, len(vocabulary) + 1
