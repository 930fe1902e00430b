"""The types that models and data share: a task, the shape of tabular input, a batch of features.

They live below both ``hpo.models`` and ``hpo.data`` so that loading a dataset never imports (and registers) the
model zoo, and a model never imports a data loader.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class InputSpec:
    """The shape of tabular input: continuous columns plus categorical columns with their cardinalities.

    Categorical codes fed to a model are *global*: column ``j`` uses codes ``offsets[j] .. offsets[j] +
    cardinalities[j] - 1`` of one shared vocabulary of size :attr:`vocab_size`.
    """

    n_continuous: int
    cardinalities: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.n_continuous < 0 or any(c < 1 for c in self.cardinalities):
            raise ValueError(f"invalid input spec {self!r}")
        if self.n_continuous == 0 and not self.cardinalities:
            raise ValueError("input spec has no features")

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

        Only references and tests use it: models never build it.
        """
        parts = []
        if self.cont is not None:
            parts.append(self.cont.to(dtype))
        if self.cat is not None:
            r, b, _ = self.cat.shape
            oh = torch.zeros(r, b, spec.vocab_size, dtype=dtype, device=self.cat.device)
            parts.append(
                oh.scatter_add_(2, self.cat, torch.ones(self.cat.shape, dtype=dtype, device=oh.device))
            )
        return torch.cat(parts, dim=-1)
