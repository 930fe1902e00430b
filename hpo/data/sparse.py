"""Sparse ID fields as embedding codes: vocabularies fitted on the training rows, rare and unseen values, hashing,
multi-valued cells.

A sparse field (``sparse:`` in a dataset declaration) becomes codes into its own embedding table
(:class:`hpo.schema.SparseField`), never one-hot rows:

* with a vocabulary (the default): the values seen at least ``min_count`` times in the training rows get codes
  ``1 .. V - 1`` in sorted order; every other value (rare in, or absent from, the training rows) gets code 0, the
  out-of-vocabulary row, which the model trains on the rare training values and then applies to values it never
  saw. A missing cell is a value of its own (``<missing>``), as for a categorical column;
* with ``hash_buckets: N``: the code is a stable 64-bit hash of the value's text modulo ``N`` (no vocabulary to
  store, no out-of-vocabulary row; values may share a bucket), for unbounded IDs;
* with ``separator``: a cell is a list of values (``"a|b|c"``), coded value by value into ``slots`` columns (the
  longest list in the training rows, or ``max_values``), -1 where a row has fewer; longer lists are cut, and the
  cut is counted. The model pools a row's embeddings by ``pooling`` (sum or mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hpo.data.columns import Part, category_codes
from hpo.errors import DataError
from hpo.schema import SparseField

__all__ = ["SparseRule", "SparseStats", "encode_sparse", "hashed"]


@dataclass(frozen=True)
class SparseRule:
    """How one sparse column is coded (the dataset declaration's ``sparse:`` entry)."""

    name: str
    min_count: int = 1
    hash_buckets: int | None = None
    separator: str | None = None
    max_values: int | None = None
    pooling: str = "sum"
    dim: int | None = None


@dataclass
class SparseStats:
    """What coding a field found, per split: values present, values out of the vocabulary, lists cut short."""

    rule: SparseRule
    vocab: int
    slots: int
    values: dict[str, int] = field(default_factory=dict)
    out_of_vocabulary: dict[str, int] = field(default_factory=dict)
    truncated_rows: dict[str, int] = field(default_factory=dict)
    rare_values_folded: int = 0

    def summary(self) -> dict[str, Any]:
        """The provenance entry (and ``hpo data info``'s line) for this field."""
        oov = {s: self.out_of_vocabulary[s] / n if n else 0.0 for s, n in self.values.items()}
        out: dict[str, Any] = {
            "name": self.rule.name,
            "path": "embedding",
            "vocabulary": self.vocab,
            "hash_buckets": self.rule.hash_buckets,
            "out_of_vocabulary_row": self.rule.hash_buckets is None,
            "min_count": self.rule.min_count if self.rule.hash_buckets is None else None,
            "rare_values_folded": self.rare_values_folded,
            "out_of_vocabulary_rate": oov,
            "slots": self.slots,
            "pooling": self.rule.pooling if self.slots > 1 else None,
            "dim": self.rule.dim,
        }
        if any(self.truncated_rows.values()):
            out["truncated_rows"] = self.truncated_rows
        return out

    def spec(self) -> SparseField:
        return SparseField(self.rule.name, self.vocab, self.slots, self.rule.pooling, self.rule.dim)


def hashed(names: Sequence[str], buckets: int) -> np.ndarray:
    """Each value's bucket: pandas' fixed-key SipHash of its text, modulo ``buckets`` (the same on every machine
    and in every run, unlike Python's ``hash``)."""
    h = pd.util.hash_array(np.asarray(list(names), dtype=object), categorize=False)
    return (h % np.uint64(buckets)).astype(np.int64)


def _values(part: Part, col: str, separator: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every value of the column in stored order: (row within the part's order, code into ``names``), and the
    distinct value texts. A multi-valued cell gives one entry per value; an empty list gives none."""
    frame = part.table.frame[col]
    if separator is None:
        codes, names = category_codes(frame)
        return np.arange(len(part.order)), codes[part.order], names
    text = frame.astype("string").iloc[part.order].reset_index(drop=True)
    lists = text.str.split(separator, regex=False).explode()
    lists = lists.str.strip()
    keep = lists.notna() & (lists != "")
    lists = lists[keep]
    codes, names = category_codes(lists.astype("category"))
    return lists.index.to_numpy(), codes, names


def _vocabulary(
    rule: SparseRule, train: tuple[np.ndarray, np.ndarray, list[str]]
) -> tuple[dict[str, int], int]:
    """Codes of the values kept (seen ``min_count`` times in the training rows), and how many were folded."""
    _, codes, names = train
    counts = np.bincount(codes, minlength=len(names))
    kept = sorted(names[i] for i in np.flatnonzero(counts >= rule.min_count))
    folded = int(((counts > 0) & (counts < rule.min_count)).sum())
    return {v: k + 1 for k, v in enumerate(kept)}, folded


def _slots(rule: SparseRule, rows: np.ndarray) -> int:
    if rule.separator is None:
        return 1
    longest = int(np.bincount(rows).max()) if len(rows) else 1
    return max(1, min(longest, rule.max_values) if rule.max_values is not None else longest)


def encode_sparse(parts: Sequence[Part], rule: SparseRule) -> tuple[list[np.ndarray], SparseStats]:
    """The field's codes ``(rows, slots)`` for every part (in stored order), and what coding found."""
    col = rule.name
    values = [_values(p, col, rule.separator) for p in parts]
    train = parts[0]
    start, stop = train.bounds["train"]
    rows0, codes0, names0 = values[0]
    in_train = (rows0 >= start) & (rows0 < stop)
    train_values = (rows0[in_train] - start, codes0[in_train], names0)
    if rule.hash_buckets is None:
        index, folded = _vocabulary(rule, train_values)
        vocab = len(index) + 1
        if vocab == 1:
            raise DataError(f"{train.table.path}: sparse field {col!r} has no value in the training rows")
    else:
        index, folded, vocab = {}, 0, rule.hash_buckets
    stats = SparseStats(rule, vocab, _slots(rule, train_values[0]), rare_values_folded=folded)
    out = []
    for part, (rows, codes, names) in zip(parts, values, strict=True):
        if rule.hash_buckets is None:
            lookup = np.array([index.get(n, 0) for n in names], dtype=np.int64)
        else:
            lookup = hashed(names, rule.hash_buckets)
        coded = lookup[codes] if len(names) else np.zeros(0, dtype=np.int64)
        out.append(_fill(part, rows, coded, stats))
    return out, stats


def _fill(part: Part, rows: np.ndarray, coded: np.ndarray, stats: SparseStats) -> np.ndarray:
    """Codes placed into ``(rows, slots)`` (-1 where a row has no more values), counting per split."""
    n, slots = len(part.order), stats.slots
    out = np.full((n, slots), -1, dtype=np.int64)
    if len(rows):
        first = np.r_[True, rows[1:] != rows[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
        position = np.arange(len(rows)) - start  # the value's place within its row's list
        fits = position < slots
        out[rows[fits], position[fits]] = coded[fits]
    for split, (a, b) in part.bounds.items():
        mine = (rows >= a) & (rows < b)
        stats.values[split] = int(mine.sum())
        stats.out_of_vocabulary[split] = (
            int((coded[mine] == 0).sum()) if stats.rule.hash_buckets is None else 0
        )
        if slots > 1 or stats.rule.separator is not None:
            per_row = np.bincount(rows[mine] - a, minlength=b - a) if b > a else np.zeros(0, dtype=np.int64)
            stats.truncated_rows[split] = int((per_row > slots).sum())
    return out
