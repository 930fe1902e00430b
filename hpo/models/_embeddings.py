"""Sparse fields' embedding tables: what an ID field with a vocabulary of 10^6 costs instead of one-hot rows.

A one-hot column of ``V`` values enters the fused first layer as ``V`` rows of its weight, ``V x T`` per replica
for ``T`` outputs (every expert, gate and column at once): at the budget's widest an MMoE reading a 10^6-value item
ID would hold 8 x 256 x 10^6 first-layer weights before training. A sparse field instead holds one table of
``V x d`` values (``d`` = its embedding width, a handful to a few dozen), shared by every consumer of the input;
its ``d`` values per row join the first layer's dense input, as continuous columns do. This is how every
recommender MTL library feeds ID fields (torch-rechub, DeepCTR, PaddleRec).

Tables of equal width are one parameter, so a batch costs one lookup per distinct width however many fields there
are. Every table has a replica axis like every other parameter: replica ``r``'s rows are drawn from ``r``'s
generator, so a vectorised model equals lone models row for row. Multi-valued fields (a list per cell, padded with
-1) are pooled per field by a sum or a mean over the values present.

With ``row_grads`` set (the trainer sets it for ``embedding_updates: rows``) a table's gradient is sparse: the rows
the batch read (a padding slot is not a read), one entry per read, summed by the optimiser. A step then costs what
the batch reads, not the vocabulary: no dense gradient of ``R x rows x width`` to zero and fill, and the lazy Adam
step (``torch.optim.SparseAdam``) moves only those rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hpo.schema import InputSpec

__all__ = ["FieldEmbeddings", "init_std"]


# A field's row starts at N(0, 1/dim): through the first layer's weights (uniform, +-1/sqrt(fan-in), as for every
# input) a fresh row then moves each output as much as one one-hot category's fresh weight does, so a sparse field
# starts where the same column read one-hot would. PyTorch's N(0, 1) starts sqrt(dim) times louder: an ID seen once
# or never keeps roughly its random row, noise in every prediction for it. torch-rechub's and DeepCTR's N(0, 1e-8)
# starts silent, and a row then grows by about the learning rate per time its ID is read: slow for the long tail of
# a small log. The recsys funnel study was run with all three (docs/results/README.md, "Sparse IDs").
def init_std(width: int) -> float:
    return 1.0 / math.sqrt(width)


class _RowLookup(torch.autograd.Function):
    """``F.embedding`` of a ``(R, rows, width)`` table whose gradient is a sparse ``(R, rows, width)`` tensor of the
    rows read (``index`` holds ``replica x rows + row``; entries where ``keep`` is false, padding, are left out)."""

    @staticmethod
    def forward(ctx: Any, table: Tensor, index: Tensor, keep: Tensor | None) -> Tensor:
        ctx.save_for_backward(index, keep)
        ctx.shape = table.shape
        return F.embedding(index, table.reshape(-1, table.shape[-1]))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        index, keep = ctx.saved_tensors
        replicas, rows, width = ctx.shape
        flat, values = index.reshape(-1), grad.reshape(-1, width)
        if keep is not None:
            sel = keep.reshape(-1)
            flat, values = flat[sel], values[sel]
        where = torch.stack([flat // rows, flat % rows])
        sparse = torch.sparse_coo_tensor(where, values, (replicas, rows, width), check_invariants=False)
        return sparse, None, None


class _Group(nn.Module):
    """The fields of one embedding width: one table ``(R, sum of their vocabularies, width)``."""

    def __init__(self, spec: InputSpec, fields: Sequence[int], replicas: int, kw: dict[str, Any]) -> None:
        super().__init__()
        first_col = spec.n_categorical + torch.tensor([0, *[f.slots for f in spec.sparse]]).cumsum(0)
        cols, shift, owner = [], [], []
        rows = 0
        for k, i in enumerate(fields):
            f = spec.sparse[i]
            for s in range(f.slots):
                cols.append(int(first_col[i]) + s)
                shift.append(rows)
                owner.append(k)
            rows += f.vocab
        self.width = spec.sparse[fields[0]].width
        self.rows = rows
        self.n_fields = len(fields)
        self.multi = any(spec.sparse[i].slots > 1 for i in fields)
        device = kw.get("device")
        self.register_buffer("cols", torch.tensor(cols, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.long, device=device), persistent=False)
        pool = torch.zeros(len(cols), len(fields), dtype=kw.get("dtype") or torch.get_default_dtype())
        pool[torch.arange(len(cols)), torch.tensor(owner)] = 1.0
        self.register_buffer("pool", pool.to(device), persistent=False)
        mean = [spec.sparse[i].pooling == "mean" for i in fields]
        self.any_mean = any(mean)
        self.register_buffer("mean", torch.tensor(mean, device=device), persistent=False)
        self.table = nn.Parameter(torch.empty(replicas, rows, self.width, **kw))
        self.row_grads = False

    cols: Tensor
    shift: Tensor
    pool: Tensor
    mean: Tensor

    def forward(self, cat: Tensor, replicas: int) -> Tensor:
        """``(R|1, B, columns)`` codes -> ``(R, B, fields x width)`` embeddings (pooled per field)."""
        codes = cat.index_select(-1, self.cols).expand(replicas, -1, -1)
        present = codes >= 0 if self.multi else None
        if present is not None:
            codes = codes.clamp_min(0)
        index = codes + self.shift
        if replicas > 1:
            index = index + torch.arange(replicas, device=index.device).view(replicas, 1, 1) * self.rows
        if self.row_grads and torch.is_grad_enabled() and self.table.requires_grad:
            keep = present.expand_as(index) if present is not None else None
            e = _RowLookup.apply(self.table, index, keep)
        else:
            e = F.embedding(index, self.table.view(replicas * self.rows, self.width))  # (R, B, C, w)
        r, b = e.shape[:2]
        if present is None:  # one slot per field: the columns are the fields
            return e.reshape(r, b, -1)
        weights = present.to(e.dtype)
        pooled = torch.einsum("rbcw,rbc,cf->rbfw", e, weights, self.pool)
        if self.any_mean:
            counts = (weights @ self.pool).clamp_min(1.0)  # (R, B, F): values present per field
            scale = torch.where(self.mean, 1.0 / counts, torch.ones_like(counts))
            pooled = pooled * scale.unsqueeze(-1)
        return pooled.reshape(r, b, -1)


class FieldEmbeddings(nn.Module):
    """Every sparse field of ``spec``, looked up together: ``(R|1, B, code columns)`` -> ``(R, B, E)`` with
    ``E = spec.embedded_width`` (fields grouped by width, in the order of :attr:`order`)."""

    def __init__(
        self,
        spec: InputSpec,
        replicas: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        by_width: dict[int, list[int]] = {}
        for i, f in enumerate(spec.sparse):
            by_width.setdefault(f.width, []).append(i)
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.groups = nn.ModuleList(_Group(spec, idx, replicas, kw) for idx in by_width.values())
        self.order = tuple(i for idx in by_width.values() for i in idx)
        self.replicas = replicas

    def reset_parameters(self, generators: Sequence[torch.Generator]) -> None:
        """N(0, 1/width) per replica (:func:`init_std`), drawn on the CPU from replica ``r``'s generator so that a
        lone model with the same seed, on any device, gets the same rows."""
        for group in self.groups:
            assert isinstance(group, _Group)
            table = group.table
            assert isinstance(table, Tensor)
            if table.is_meta:
                continue
            with torch.no_grad():
                for r, g in enumerate(generators):
                    std = init_std(group.width)
                    rows = torch.empty(table.shape[1:], dtype=table.dtype).normal_(0.0, std, generator=g)
                    table[r].copy_(rows)

    def tables(self) -> list[nn.Parameter]:
        return [group.table for group in self.groups if isinstance(group, _Group)]

    def use_row_grads(self, on: bool) -> None:
        """Sparse table gradients of the rows read (``embedding_updates: rows``) or dense ones (the default)."""
        for group in self.groups:
            assert isinstance(group, _Group)
            group.row_grads = on

    def forward(self, cat: Tensor) -> Tensor:
        parts = [group(cat, self.replicas) for group in self.groups]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
