"""The types that models and data share: a task, the shape of tabular input, a batch of features.

They live below both ``hpo.models`` and ``hpo.data`` so that loading a dataset never imports (and registers) the
model zoo, and a model never imports a data loader.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "CURVE_SPLITS",
    "HIGHER_IS_BETTER",
    "METRICS_BY_KIND",
    "TASK_KINDS",
    "Features",
    "InputSpec",
    "SparseField",
    "TaskSpec",
    "default_metric",
]

# every metric hpo computes, and its direction (training stops early by it; reports mark the best by it)
HIGHER_IS_BETTER = {"auc": True, "logloss": False, "mse": False, "r2": True, "loss": False}

TASK_KINDS = ("binary", "regression")

# the metrics of each kind of task, in the order hpo reports them; the first is the kind's headline metric, which
# early stopping, objectives and reports use when none is named (one declaration for trainer, search and report)
METRICS_BY_KIND = {"binary": ("auc", "logloss"), "regression": ("mse", "r2")}

# a run's loss curve: each point (one per epoch, at the step count it reached) holds, besides ``epoch``, ``step``,
# ``train_loss`` (the objective as optimised) and ``valid`` (the early-stopping number), every task's unweighted
# loss (BCE or MSE) on the training rows of that epoch and on the validation split, under these key prefixes; the
# trainer writes them, storage turns them into rows keyed by split, reports draw them (loss against steps)
CURVE_SPLITS = {"train": "train_loss.", "valid": "valid_loss."}


def default_metric(kind: str) -> str:
    """The headline metric of a task of ``kind``: AUC for binary tasks, MSE for regression."""
    return METRICS_BY_KIND[kind][0]


@dataclass(frozen=True)
class TaskSpec:
    """One prediction target: a name and whether it is a binary (logit output) or a regression task."""

    name: str
    kind: str = "binary"

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {TASK_KINDS}, got {self.kind!r}")


POOLINGS = ("sum", "mean")
DEFAULT_FIELD_DIM = 8  # a sparse field's embedding width when neither its dataset nor the study sets one


@dataclass(frozen=True)
class SparseField:
    """A categorical input read through its own embedding table instead of one-hot rows (an ID field of a
    recommendation log: users, items, authors; vocabularies of 10^4 to 10^7).

    ``vocab`` rows, row 0 the out-of-vocabulary row (a value too rare in, or absent from, the training rows; for a
    hashed field, simply bucket 0). ``slots`` codes per row: 1 for a single value; more for a multi-valued field
    (a list per cell, such as tags), padded with -1 and pooled by ``pooling`` (sum or mean of the values present).
    ``dim`` is the embedding width; ``None`` takes the study's ``field_dim`` (a tunable model setting).
    """

    name: str
    vocab: int
    slots: int = 1
    pooling: str = "sum"
    dim: int | None = None

    def __post_init__(self) -> None:
        if self.vocab < 1 or self.slots < 1 or (self.dim is not None and self.dim < 1):
            raise ValueError(f"invalid sparse field {self!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"sparse field {self.name!r}: pooling must be one of {POOLINGS}, got {self.pooling!r}"
            )

    @property
    def width(self) -> int:
        """Its embedding width (the study's default where the field sets none)."""
        return self.dim if self.dim is not None else DEFAULT_FIELD_DIM


@dataclass(frozen=True)
class InputSpec:
    """The shape of tabular input: continuous columns, categorical columns with their cardinalities (read as
    one-hot rows) and sparse fields (read through embedding tables).

    Categorical codes fed to a model are *global*: column ``j`` uses codes ``offsets[j] .. offsets[j] +
    cardinalities[j] - 1`` of one shared vocabulary of size :attr:`vocab_size`. A sparse field's codes follow the
    categorical columns in the same code tensor (``slots`` columns each, in field order), local to the field:
    ``0 .. vocab - 1``, -1 for an empty slot of a multi-valued field.
    """

    n_continuous: int
    cardinalities: tuple[int, ...] = ()
    sparse: tuple[SparseField, ...] = ()

    def __post_init__(self) -> None:
        if self.n_continuous < 0 or any(c < 1 for c in self.cardinalities):
            raise ValueError(f"invalid input spec {self!r}")
        if self.n_continuous == 0 and not self.cardinalities and not self.sparse:
            raise ValueError("input spec has no features")

    def with_field_dim(self, dim: int) -> InputSpec:
        """This spec with every sparse field that sets no width of its own ``dim`` wide (the study's
        ``field_dim``, tuned like any model setting)."""
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"field_dim must be a positive integer, got {dim!r}")
        fields = tuple(f if f.dim is not None else replace(f, dim=dim) for f in self.sparse)
        return replace(self, sparse=fields)

    @property
    def n_code_columns(self) -> int:
        """Columns of the code tensor: the categorical columns, then every sparse field's slots."""
        return self.n_categorical + sum(f.slots for f in self.sparse)

    @property
    def embedded_width(self) -> int:
        """Values the sparse fields' embeddings add to the first layer's input."""
        return sum(f.width for f in self.sparse)

    @property
    def dense_width(self) -> int:
        """Width of the first layer's input as a dense product sees it: continuous columns, one column per
        category and the sparse fields' embeddings (the one-hot width when there are no sparse fields)."""
        return self.one_hot_width + self.embedded_width

    @property
    def n_categorical(self) -> int:
        return len(self.cardinalities)

    @property
    def vocab_size(self) -> int:
        return sum(self.cardinalities)

    @property
    def one_hot_width(self) -> int:
        """Width of the equivalent dense input: continuous columns plus one column per category."""
        return self.n_continuous + self.vocab_size

    @property
    def offsets(self) -> tuple[int, ...]:
        out, acc = [], 0
        for c in self.cardinalities:
            out.append(acc)
            acc += c
        return tuple(out)


class Features(NamedTuple):
    """A batch of inputs for ``R`` replicas: ``cont`` is ``(R, B, n_cont)``; ``cat`` is ``(R, B, n_cat)`` codes."""

    cont: Tensor | None
    cat: Tensor | None

    @property
    def replicas(self) -> int:
        t = self.cont if self.cont is not None else self.cat
        assert t is not None
        return int(t.shape[0])

    @property
    def batch_size(self) -> int:
        t = self.cont if self.cont is not None else self.cat
        assert t is not None
        return int(t.shape[1])

    def one_hot(self, spec: InputSpec, dtype: torch.dtype = torch.float32) -> Tensor:
        """The explicit dense encoding ``[cont, one_hot(cat)]`` of shape ``(R, B, spec.one_hot_width)``.

        Only references and tests use it: models never build it. Sparse fields are left out (their embeddings
        are parameters, not an encoding of the input).
        """
        parts = []
        if self.cont is not None:
            parts.append(self.cont.to(dtype))
        if self.cat is not None and spec.n_categorical:
            cat = self.cat[
                ..., : spec.n_categorical
            ]  # sparse fields' codes (after them) have no one-hot form
            r, b, _ = cat.shape
            oh = torch.zeros(r, b, spec.vocab_size, dtype=dtype, device=cat.device)
            parts.append(oh.scatter_add_(2, cat, torch.ones(cat.shape, dtype=dtype, device=oh.device)))
        return torch.cat(parts, dim=-1)
