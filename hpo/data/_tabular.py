"""The one in-memory form of every dataset: tensors per split, ready to live on a device.

Continuous columns are standardised and categorical columns encoded with vocabularies fitted on the training rows
only; code 0 of every categorical column is "unknown" (a category not seen in training). Codes are global (each
column's codes are offset into one shared vocabulary), which is what the models' sum-of-rows first layer reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hpo.errors import DataError
from hpo.schema import Features, InputSpec, TaskSpec

__all__ = ["SPLITS", "Encoder", "Split", "TabularDataset", "fit_encoder", "split_indices"]

SPLITS = ("train", "valid", "test")
SCALINGS = ("standard", "none")


@dataclass
class Split:
    """One split: ``cont`` ``(N, n_cont)`` float32, ``cat`` ``(N, n_cat)`` int64 global codes, ``y`` ``(N, K)``.

    A *replicated* split carries one dataset per replica, with a leading replica axis on all three tensors
    (``(R, N, ...)``): the paper's synthetic protocol draws fresh data for every run, and the vectorised trainer
    then trains R runs on R datasets at once. Every replica has the same number of rows.
    """

    cont: Tensor
    cat: Tensor
    y: Tensor

    @property
    def replicated(self) -> bool:
        return self.y.dim() == 3

    def __len__(self) -> int:
        return int(self.y.shape[-2])

    def features(self, index: Tensor | None = None) -> Features:
        """Features with a leading replica axis (1 unless replicated); ``index`` ``(R, B)`` gathers a batch per
        replica (from replica r's own rows when the split is replicated)."""
        cont = self.cont if self.cont.shape[-1] else None
        cat = self.cat if self.cat.shape[-1] else None
        if index is None:
            if self.replicated:
                return Features(cont, cat)
            return Features(
                None if cont is None else cont.unsqueeze(0), None if cat is None else cat.unsqueeze(0)
            )
        return Features(
            None if cont is None else self._gather(cont, index),
            None if cat is None else self._gather(cat, index),
        )

    def labels(self, index: Tensor) -> Tensor:
        """Labels ``(R, B, K)`` of the rows ``index`` ``(R, B)`` gathers."""
        return self._gather(self.y, index)

    def _gather(self, t: Tensor, index: Tensor) -> Tensor:
        """Rows ``index`` ``(R, B)`` of ``t`` -> ``(R, B, ...)`` by one ``index_select``, several times as fast on
        the CPU as advanced indexing for a batch (which was a noticeable share of a paper-size step)."""
        if self.replicated:  # replica r's rows: offset into the flattened (R * n) rows
            r, n = t.shape[:2]
            if not t.is_contiguous():  # a slice of the rows: flattening would copy the whole split
                return t[torch.arange(r, device=index.device).unsqueeze(1), index]
            index = index + torch.arange(r, device=index.device).unsqueeze(1) * n
            t = t.reshape(r * n, *t.shape[2:])
        return torch.index_select(t, 0, index.reshape(-1)).view(*index.shape, *t.shape[1:])

    def rows(self, start: int, stop: int) -> Split:
        """Rows ``start:stop`` (of every replica)."""
        if self.replicated:
            return Split(self.cont[:, start:stop], self.cat[:, start:stop], self.y[:, start:stop])
        return Split(self.cont[start:stop], self.cat[start:stop], self.y[start:stop])

    def select_replicas(self, keep: Sequence[int]) -> Split:
        """The datasets of replicas ``keep`` (a shared split is returned as is)."""
        if not self.replicated:
            return self
        idx = torch.as_tensor(list(keep), device=self.y.device)
        return Split(self.cont[idx], self.cat[idx], self.y[idx])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.cont.to(device), self.cat.to(device), self.y.to(device))


class TrainStream(Protocol):
    """Fresh training rows for every epoch from a generator (the validation and test rows stay fixed): training
    then never sees a row twice, so what limits a model is its capacity, not the data (``dataset: {stream: true}``).
    """

    def draw(self, epoch: int, device: torch.device, out: Split | None = None) -> Split:
        """Epoch ``epoch``'s training rows (epoch 1's are the dataset's own), drawn on ``device``; deterministic.
        With ``out`` (one replica's rows inside a stacked split) the rows are written there and ``out`` returned,
        the same numbers as without it."""
        ...

    def select(self, keep: Sequence[int]) -> TrainStream:
        """The stream of replicas ``keep`` of a replicated dataset."""
        ...


@dataclass(frozen=True)
class StackedStream:
    """One stream per replica, drawn together as a replicated split."""

    streams: tuple[TrainStream, ...]

    def draw(self, epoch: int, device: torch.device, out: Split | None = None) -> Split:
        """Every replica's rows, each drawn straight into its slice of one ``(R, n, ...)`` split: stacking R
        separate draws copied the whole epoch's rows once more, 6% of a streamed 32-replica chunk's time on the
        CPU (bench/PROFILE.md)."""
        first = self.streams[0].draw(epoch, device)
        first_parts, r = (first.cont, first.cat, first.y), len(self.streams)
        rows = out
        if rows is None:
            rows = Split(*(torch.empty((r, *t.shape), dtype=t.dtype, device=t.device) for t in first_parts))
        for t, part in zip((rows.cont, rows.cat, rows.y), first_parts, strict=True):
            t[0].copy_(part)
        for i, stream in enumerate(self.streams[1:], start=1):
            stream.draw(epoch, device, out=Split(rows.cont[i], rows.cat[i], rows.y[i]))
        return rows

    def select(self, keep: Sequence[int]) -> TrainStream:
        return StackedStream(tuple(self.streams[i] for i in keep))


@dataclass
class TabularDataset:
    """A prepared dataset: the model-facing :class:`InputSpec`, the tasks and the three splits (and, for a
    generator that streams, where each epoch's fresh training rows come from)."""

    name: str
    spec: InputSpec
    tasks: tuple[TaskSpec, ...]
    splits: dict[str, Split]
    continuous: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    stream: TrainStream | None = None

    def train_split(self, epoch: int) -> Split:
        """The training rows of ``epoch`` (1-based): the dataset's own, or fresh ones from its stream after the
        first epoch, on the dataset's device."""
        if self.stream is None or epoch <= 1:
            return self.splits["train"]
        return self.stream.draw(epoch, self.device)

    def __post_init__(self) -> None:
        for name in SPLITS:
            if name not in self.splits:
                raise DataError(f"dataset {self.name}: split {name!r} is missing")
            if len(self.splits[name]) == 0:
                raise DataError(
                    f"dataset {self.name}: split {name!r} is empty; give it rows or change the split"
                )

    @property
    def device(self) -> torch.device:
        return self.splits["train"].y.device

    @property
    def replicas(self) -> int | None:
        """The number of per-replica datasets a replicated dataset holds; None for one shared dataset."""
        y = self.splits["train"].y
        return int(y.shape[0]) if y.dim() == 3 else None

    def select_replicas(self, keep: Sequence[int]) -> TabularDataset:
        if self.replicas is None:
            return self
        stream = self.stream.select(keep) if self.stream is not None else None
        return replace(
            self, splits={k: v.select_replicas(keep) for k, v in self.splits.items()}, stream=stream
        )

    @staticmethod
    def stack(datasets: Sequence[TabularDataset]) -> TabularDataset:
        """One replicated dataset from R datasets of the same shape (replica r trains on ``datasets[r]``)."""
        if not datasets:
            raise DataError("cannot stack zero datasets")
        first = datasets[0]
        for other in datasets[1:]:
            if other.spec != first.spec or other.tasks != first.tasks:
                raise DataError(f"cannot stack {other.name} onto {first.name}: inputs or tasks differ")
        splits = {
            s: Split(
                torch.stack([d.splits[s].cont for d in datasets]),
                torch.stack([d.splits[s].cat for d in datasets]),
                torch.stack([d.splits[s].y for d in datasets]),
            )
            for s in SPLITS
        }
        provenance = {**first.provenance, "replicas": [d.provenance for d in datasets]}
        streams = [d.stream for d in datasets]
        stream = StackedStream(tuple(s for s in streams if s is not None)) if all(streams) else None
        return replace(
            first,
            name=f"{first.name} (x{len(datasets)})",
            splits=splits,
            provenance=provenance,
            stream=stream,
        )

    def redraw_heldout(self, seed: int) -> TabularDataset:
        """The validation and test rows pooled and split again at random (same sizes; training rows unchanged):
        one level of the split factor of a crossed retrain. Seed 0 is the dataset's own split. The encoding was
        fitted on the training rows only, so no held-out row leaks into it either way."""
        if seed == 0:
            return self
        if self.replicas is not None:
            raise DataError(
                f"dataset {self.name}: held-out rows are redrawn for one shared dataset, not replicas"
            )
        valid, test = self.splits["valid"], self.splits["test"]
        pooled = Split(
            torch.cat([valid.cont, test.cont]), torch.cat([valid.cat, test.cat]), torch.cat([valid.y, test.y])
        )
        gen = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(len(pooled), generator=gen).to(pooled.y.device)
        take = Split(pooled.cont[order], pooled.cat[order], pooled.y[order])
        n_valid = len(valid)
        splits = {
            "train": self.splits["train"],
            "valid": take.rows(0, n_valid),
            "test": take.rows(n_valid, len(take)),
        }
        return replace(self, splits=splits, provenance={**self.provenance, "heldout_redrawn_with_seed": seed})

    def to(self, device: torch.device | str) -> TabularDataset:
        return TabularDataset(
            self.name,
            self.spec,
            self.tasks,
            {k: v.to(device) for k, v in self.splits.items()},
            self.continuous,
            self.categorical,
            self.provenance,
            self.stream,
        )

    def label_pearson(self, split: str = "train") -> float | None:
        """Pearson correlation of the first two tasks' labels on ``split`` (None with fewer than two tasks)."""
        y = self._labels(split)
        if y.shape[1] < 2:
            return None
        a, b = y[:, 0].double().cpu().numpy(), y[:, 1].double().cpu().numpy()
        both = ~(np.isnan(a) | np.isnan(b))  # rows where both tasks are defined
        a, b = a[both], b[both]
        if len(a) < 2 or a.std() == 0 or b.std() == 0:  # a task defined only where the other is constant
            return None
        return float(np.corrcoef(a, b)[0, 1])

    def _labels(self, split: str) -> Tensor:
        """Labels ``(rows, K)``, the replicas' rows pooled for a replicated dataset."""
        y = self.splits[split].y
        return y.reshape(-1, y.shape[-1])

    def field_info(self) -> list[dict[str, Any]]:
        """Per categorical input: its vocabulary, the values the training rows use, and the share of validation
        and test rows whose value the training rows never show (cold start: the model learnt nothing for them)."""
        out = []
        cards = self.spec.cardinalities
        offsets: np.ndarray = np.cumsum([0, *cards[:-1]]) if cards else np.zeros(0, dtype=np.int64)
        names = list(self.categorical) or [f"field{j}" for j in range(len(cards))]
        width = self.spec.n_code_columns
        for j, (name, size) in enumerate(zip(names, cards, strict=False)):
            codes = {s: self.splits[s].cat.reshape(-1, width)[:, j].cpu().numpy() for s in SPLITS}
            seen = np.zeros(size, dtype=bool)
            seen[codes["train"] - offsets[j]] = True
            unseen = {
                s: float((~seen[codes[s] - offsets[j]]).mean()) if len(codes[s]) else 0.0
                for s in ("valid", "test")
            }
            out.append(
                {
                    "name": name,
                    "vocabulary": int(size),
                    "seen_in_train": int(seen.sum()),
                    "unseen_rate": unseen,
                }
            )
        return out + self.sparse_info()

    def sparse_info(self) -> list[dict[str, Any]]:
        """Per sparse field: its table's rows, the rows the training data uses, and the share of validation and
        test values that fall on the out-of-vocabulary row or on a row no training value uses (the model learnt
        nothing there); with what the preparation recorded (hash buckets, minimum count, pooling, slots)."""
        recorded = {f["name"]: f for f in self.provenance.get("sparse_fields", [])}
        out, column = [], self.spec.n_categorical
        for f in self.spec.sparse:
            slots = {
                s: self.splits[s].cat.reshape(-1, self.spec.n_code_columns)[:, column : column + f.slots]
                for s in SPLITS
            }
            codes = {s: c[c >= 0].cpu().numpy() for s, c in slots.items()}
            seen = np.zeros(f.vocab, dtype=bool)
            seen[codes["train"]] = True
            if _has_oov_row(recorded.get(f.name, {})):
                seen[0] = False  # the out-of-vocabulary row stands for values the model does not know
            unseen = {s: float((~seen[codes[s]]).mean()) if len(codes[s]) else 0.0 for s in ("valid", "test")}
            entry = {"pooling": f.pooling if f.slots > 1 else None, **recorded.get(f.name, {})}
            entry |= {"name": f.name, "path": "embedding", "vocabulary": f.vocab, "slots": f.slots}
            entry |= {"dim": f.dim, "seen_in_train": int(seen.sum()), "unseen_rate": unseen}
            out.append(entry)
            column += f.slots
        return out

    def info(self) -> dict[str, Any]:
        """Facts a user checks before tuning: sizes, feature counts, label balance and correlation."""
        tasks = []
        for k, t in enumerate(self.tasks):
            by_split = {s: self._labels(s)[:, k].double() for s in SPLITS}
            by_split = {s: v[~torch.isnan(v)] for s, v in by_split.items()}  # where the task is defined
            y = by_split["train"]
            entry: dict[str, Any] = {"name": t.name, "kind": t.kind}
            if any(len(v) < self._labels(s).shape[0] for s, v in by_split.items()):
                entry["defined_rows"] = {s: len(v) for s, v in by_split.items()}
            if t.kind == "binary":
                entry["positive_rate"] = {
                    s: float(v.mean()) if len(v) else float("nan") for s, v in by_split.items()
                }
            else:
                entry["mean"], entry["std"] = float(y.mean()), float(y.std())
            tasks.append(entry)
        return {
            "name": self.name,
            "rows": {s: len(self.splits[s]) for s in SPLITS},
            "continuous_features": self.spec.n_continuous,
            "categorical_features": self.spec.n_categorical,
            "sparse_features": len(self.spec.sparse),
            "one_hot_width": self.spec.one_hot_width,
            "tasks": tasks,
            "label_pearson": self.label_pearson(),
            "categorical_fields": self.field_info(),
            "provenance": self.provenance,
        }


def _has_oov_row(recorded: dict[str, Any]) -> bool:
    """Whether a sparse field's row 0 is the out-of-vocabulary row (a fitted vocabulary's), not a value's own
    (a hash bucket, a generator's ID)."""
    return recorded.get("hash_buckets") is None and bool(recorded.get("out_of_vocabulary_row", True))


@dataclass(frozen=True)
class Encoder:
    """Scaling and vocabularies fitted on training rows; applied unchanged to every split."""

    continuous: tuple[str, ...]
    categorical: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    vocabularies: tuple[tuple[str, ...], ...]

    @property
    def spec(self) -> InputSpec:
        return InputSpec(len(self.continuous), tuple(len(v) + 1 for v in self.vocabularies))

    def encode(self, df: pd.DataFrame, source: str) -> tuple[Tensor, Tensor]:
        """``(cont float32 (N, n_cont), cat int64 (N, n_cat))``; unseen categories get code 0 (unknown)."""
        cont = np.empty((len(df), len(self.continuous)), dtype=np.float32)
        for j, col in enumerate(self.continuous):
            values = numeric_column(df, col, source)
            cont[:, j] = (values - self.means[j]) / self.stds[j]
        cat = np.empty((len(df), len(self.categorical)), dtype=np.int64)
        offset = 0
        for j, (col, vocab) in enumerate(zip(self.categorical, self.vocabularies, strict=True)):
            codes = pd.Index(vocab).get_indexer(df[col].astype(str)).astype(np.int64) + 1
            cat[:, j] = codes + offset  # -1 for unseen: + 1 makes it 0, the unknown code
            offset += len(vocab) + 1
        return torch.from_numpy(cont), torch.from_numpy(cat)


def numeric_column(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    """A continuous column as float64, refusing unparseable or missing values with the file line that holds one
    (``df`` is a header-less file's rows with their 0-based positions as the index, as census-income is read)."""
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        line = int(df.index[pos]) + 1
        raise DataError(
            f"{source}: line {line}: column {col!r}: expected a finite number, got {_show(raw.iloc[pos])}"
        )
    return values.to_numpy(dtype=np.float64)


def _show(value: object) -> str:
    """A cell as a user wrote it: ``'forty'`` for text, ``nan`` for a missing number."""
    return repr(value) if isinstance(value, str) else str(value)


def fit_encoder(
    train: pd.DataFrame,
    continuous: Sequence[str],
    categorical: Sequence[str],
    source: str,
    scaling: str = "standard",
) -> Encoder:
    """Fit standardisation and vocabularies on the training rows only."""
    if scaling not in SCALINGS:
        raise DataError(f"{source}: scaling must be one of {SCALINGS}, got {scaling!r}")
    means, stds = [], []
    for col in continuous:
        v = numeric_column(train, col, source)
        if scaling == "standard":
            sd = float(v.std())
            means.append(float(v.mean()))
            stds.append(sd if sd > 0 else 1.0)
        else:
            means.append(0.0)
            stds.append(1.0)
    vocabs = tuple(tuple(sorted(train[col].astype(str).unique())) for col in categorical)
    return Encoder(tuple(continuous), tuple(categorical), tuple(means), tuple(stds), vocabs)


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into consecutive parts of the given fractions (sum <= 1;
    the last part takes the remainder)."""
    perm = np.random.default_rng(seed).permutation(n)
    cuts, acc = [], 0.0
    for f in fractions[:-1]:
        acc += f
        cuts.append(round(acc * n))
    return [np.sort(p) for p in np.split(perm, cuts)]
