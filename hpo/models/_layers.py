"""Fused building blocks shared by every architecture.

Every parameter carries two leading "parallel" axes that the papers' implementations express as Python loops:

* a **replica** axis ``R``: independent copies of the whole model (one per seed) trained as one vectorised model;
* a **block** axis ``E``: the experts of a layer, the task columns, the towers.

A layer of ``E`` parallel blocks is then one batched matrix product over ``R * E`` matrices instead of ``R * E``
module calls. Activations of parallel blocks are laid out ``(R, E, B, width)`` so that ``torch.baddbmm`` consumes
them without copies.

The first layer of every block reads tabular input: continuous columns through a dense product and categorical
columns (integer codes into one global vocabulary) as a *sum of rows* of the weight matrix, which equals the product
of the one-hot encoding with the weights without ever building the one-hot matrix. All consumers of the input
(experts, gates, columns) share one fused first layer, so the input is read once per batch. Sparse fields (ID
fields with large vocabularies) are read through embedding tables instead (``_embeddings.py``): their embeddings
join the dense input of the same fused layer.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hpo.models._embeddings import FieldEmbeddings
from hpo.models._native import loaded_ops, native_ops
from hpo.schema import Features, InputSpec, TaskSpec

__all__ = [
    "Features",
    "InputLayer",
    "InputSpec",
    "ParallelLinear",
    "ParallelMLP",
    "Part",
    "TaskSpec",
    "sum_of_rows",
    "sum_of_rows_grad",
]


# Without the compiled kernel: the widest first layer (outputs per replica) whose CPU backward goes through a sparse
# CSR product; wider ones use one index_add_ per column. A fixed threshold, not a per-run timing, so the path never
# depends on how busy the machine was: bench/first_layer.py measured the crossover.
CSR_MAX_WIDTH = 256


def _csr_of_codes(codes: Tensor, n_rows: int, dtype: torch.dtype) -> Tensor:
    """The transposed one-hot matrix ``(n_rows, N)`` of ``codes`` ``(N, C)`` in CSR form (a one per code).

    A stable sort keeps each row's nonzeros in ``(n, j)`` order, the order the native kernel sums in
    (``_native.cpp``); but PyTorch's sparse product may regroup the sum on some CPUs (seen on one of this
    project's machines at 16 stacked replicas), so the two agree to rounding, not always bit for bit.
    """
    n, c = codes.shape
    flat = codes.reshape(-1)
    # a stable sort's permutation is unique, so sorting 32-bit keys gives the same order as 64-bit ones, faster
    # (bench/first_layer.py measures the product)
    keys = flat.to(torch.int32) if n_rows < 2**31 else flat
    order = torch.argsort(keys, stable=True)
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=codes.device)
    crow[1:] = torch.bincount(flat, minlength=n_rows).cumsum(0)
    values = torch.ones(n * c, dtype=dtype, device=codes.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is long stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, order // c, values, (n_rows, n), check_invariants=False)


def sum_of_rows_grad(codes: Tensor, grad_out: Tensor, n_rows: int, replicas: int = 1) -> Tensor:
    """``grad_weight[codes[n, j]] += grad_out[n]``: the weight gradient of :func:`sum_of_rows`.

    ``replicas`` > 1 says that the rows are that many equal blocks, block ``r``'s codes indexing only block ``r``
    of the weight's rows (the vectorised models' layout); the kernel then gives each thread whole replicas, which
    no other thread writes (measured against one thread in bench/PROFILE.md "Seventh pass").
    The result is the same either way.

    On the CPU (float32/float64) by the compiled kernel when it is built (``_native.py``); without it, by a sparse
    CSR product at widths up to ``CSR_MAX_WIDTH`` and one ``index_add_`` per categorical column above (and on
    CUDA, and for other dtypes). All three add each row's contributions in ascending ``n``; where every code
    belongs to one categorical column, as the input layer's global vocabulary guarantees, that is the whole order:
    the kernel and the per-column loop agree bit for bit; the CSR product, whose sparse library may regroup the
    sum on some CPUs, to rounding. PyTorch's own ``embedding_bag`` backward was measured slower than the loop at
    narrow widths on the CPU; the kernel is faster than the fallback at narrow widths and level with it at the
    budget's widest (bench/first_layer.py; figures in bench/PROFILE.md).
    """
    grad_out = grad_out.contiguous()
    if grad_out.device.type == "cpu" and grad_out.dtype in (torch.float32, torch.float64):
        ops = loaded_ops() if torch.compiler.is_compiling() else native_ops()
        if ops is not None:
            out: Tensor = ops.sum_rows_backward(codes, grad_out, n_rows, replicas)
            return out
        if grad_out.shape[1] <= CSR_MAX_WIDTH:
            return _csr_of_codes(codes, n_rows, grad_out.dtype) @ grad_out
    grad_w = grad_out.new_zeros(n_rows, grad_out.shape[1])
    for j in range(codes.shape[1]):
        grad_w.index_add_(0, codes[:, j], grad_out)
    return grad_w


class _SumOfRows(torch.autograd.Function):
    """``out[n] = sum_j weight[codes[n, j]]``: forward by ``embedding_bag``, backward by :func:`sum_of_rows_grad`."""

    @staticmethod
    def forward(ctx: Any, codes: Tensor, weight: Tensor, replicas: int) -> Tensor:
        ctx.save_for_backward(codes)
        ctx.n_rows, ctx.replicas = weight.shape[0], replicas
        return F.embedding_bag(codes, weight, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[None, Tensor | None, None]:
        if not ctx.needs_input_grad[1]:
            return None, None, None
        (codes,) = ctx.saved_tensors
        return None, sum_of_rows_grad(codes, grad_out, ctx.n_rows, ctx.replicas), None


def sum_of_rows(codes: Tensor, weight: Tensor, replicas: int = 1) -> Tensor:
    """Sum of the rows of ``weight`` (``(V, T)``) selected by each row of ``codes`` (``(N, C)``) -> ``(N, T)``.

    ``replicas``: see :func:`sum_of_rows_grad` (a promise about the codes' layout that only speeds the backward).
    """
    out: Tensor = _SumOfRows.apply(codes, weight, replicas)
    return out


@dataclass(frozen=True)
class Part:
    """A consumer of the fused input layer: ``n`` parallel blocks of ``width`` outputs each.

    ``hidden`` marks hidden units (experts, columns, bottoms), which count against the budget; gate logits and
    low-rank projections do not. ``init_bound`` overrides the layer's uniform initialisation range for this part
    (DSelect-k's official code starts its selector logits in a narrow range, for example).
    """

    n: int
    width: int
    hidden: bool = True
    init_bound: float | None = None

    @property
    def size(self) -> int:
        return self.n * self.width


def _uniform_(t: Tensor, bound: float, generators: Sequence[torch.Generator]) -> None:
    """Fill replica ``r`` of ``t`` from ``generators[r]``, so a lone model with the same seed gets equal values."""
    if t.is_meta:
        return
    with torch.no_grad():
        for r, g in enumerate(generators):
            if t.device.type == "cpu":
                t[r].uniform_(-bound, bound, generator=g)
            else:  # draw on the CPU so that CPU and CUDA models start from the same weights
                t[r].copy_(torch.empty(t[r].shape, dtype=t.dtype).uniform_(-bound, bound, generator=g))


class InputLayer(nn.Module):
    """The first layer of every block, fused: ``x_cont @ W_cont + sum_j W_cat[x_cat_j] (+ b)``.

    Its outputs are split into named :class:`Part` s. Weights are initialised like ``nn.Linear`` on the one-hot
    input (uniform in ``+-1/sqrt(one_hot_width)``), so the fused layer and a dense reference start alike.
    """

    def __init__(
        self,
        spec: InputSpec,
        parts: Mapping[str, Part],
        replicas: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.parts = dict(parts)
        self.replicas = replicas
        t = sum(p.size for p in self.parts.values())
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight_cont = (
            nn.Parameter(torch.empty(replicas, spec.n_continuous, t, **kw)) if spec.n_continuous else None
        )
        self.weight_cat = (
            nn.Parameter(torch.empty(replicas, spec.vocab_size, t, **kw)) if spec.vocab_size else None
        )
        self.bias = nn.Parameter(torch.empty(replicas, t, **kw)) if bias else None
        # sparse fields: their embedding tables, and the rows of the first layer that read the embeddings
        self.embeddings = FieldEmbeddings(spec, replicas, **kw) if spec.sparse else None
        self.weight_emb = (
            nn.Parameter(torch.empty(replicas, spec.embedded_width, t, **kw)) if spec.sparse else None
        )
        self.out_features = t

    def reset_parameters(self, generators: Sequence[torch.Generator]) -> None:
        bound = 1.0 / math.sqrt(self.spec.dense_width)
        for p in (self.weight_cont, self.weight_cat, self.bias, self.weight_emb):
            if p is not None:
                _uniform_(p, bound, generators)
                # parts with their own range are drawn again afterwards, so that models without such parts
                # consume the generators exactly as before
                for lo, part in self._part_offsets():
                    if part.init_bound is not None:
                        _uniform_(p[..., lo : lo + part.size], part.init_bound, generators)

    def _part_offsets(self) -> list[tuple[int, Part]]:
        out, lo = [], 0
        for part in self.parts.values():
            out.append((lo, part))
            lo += part.size
        return out

    def part_shape(self, name: str) -> tuple[int, int]:
        """``(n, width)`` of a part, checked against the built weight so that accounting follows the modules."""
        w = next(w for w in (self.weight_cont, self.weight_cat, self.weight_emb) if w is not None)
        assert w.shape[-1] == self.out_features
        p = self.parts[name]
        return p.n, p.width

    def dense_weight(self) -> Tensor:
        """``(R, dense_width, T)``: the weight as it would multiply the explicit one-hot input (followed by the
        sparse fields' embeddings, where there are any)."""
        ws: list[Tensor] = [w for w in (self.weight_cont, self.weight_cat, self.weight_emb) if w is not None]
        return torch.cat(ws, dim=1)

    def forward(self, x: Features) -> dict[str, Tensor]:
        """Return each part as ``(R, B, n * width)``; callers reshape to their own layout."""
        out = self.project(x)
        return dict(zip(self.parts, out.split([p.size for p in self.parts.values()], dim=-1), strict=True))

    def project(self, x: Features) -> Tensor:
        """All parts side by side, ``(R, B, T)`` in the order of ``parts``: for a consumer of every part at once
        (the compiled experts' mix), whose gradient then arrives whole, without the split's concatenation.

        Always in the weights' own dtype, bf16 autocast (``training.amp``) or not: the layer's work is a gather
        and sum of rows plus a product with a handful of continuous columns, which bf16 does not speed, while a
        bf16 output would take the experts' mix off its compiled kernel (float32/64 only) and onto the slower
        PyTorch form, and the backward's sum of rows off its kernel too (bench/amp.py: MMoE 8 x 256 at half the
        float32 speed that way). The wide products of later layers are where bf16 pays, and they stay under it.
        """
        t = x.cont if x.cont is not None else x.cat
        device = t.device.type if t is not None else "cpu"
        if device in ("cpu", "cuda") and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return self._project(x)
        return self._project(x)

    def _project(self, x: Features) -> Tensor:
        r = self.replicas
        out: Tensor | None = None
        if self.weight_cont is not None:
            assert x.cont is not None, "model expects continuous features"
            cont = x.cont.expand(r, -1, -1)
            if self.bias is not None:
                out = torch.baddbmm(self.bias.unsqueeze(1), cont, self.weight_cont)
            else:
                out = torch.bmm(cont, self.weight_cont)
        if self.weight_cat is not None:
            assert x.cat is not None, "model expects categorical features"
            cat = x.cat if self.embeddings is None else x.cat[..., : self.spec.n_categorical]
            cat = cat.expand(r, -1, -1)
            _, b, c = cat.shape
            v = self.spec.vocab_size
            if r > 1:
                cat = cat + torch.arange(r, device=cat.device).view(r, 1, 1) * v
            s = sum_of_rows(cat.reshape(r * b, c), self.weight_cat.view(r * v, -1), r).view(r, b, -1)
            # in place: the product above is a fresh tensor its backward does not need, so no copy is made
            out = (s if self.bias is None else s + self.bias.unsqueeze(1)) if out is None else out.add_(s)
        if self.embeddings is not None and self.weight_emb is not None:
            assert x.cat is not None, "model expects sparse fields' codes"
            emb = self.embeddings(x.cat)  # (R, B, embedded width)
            if out is None:
                out = (
                    emb @ self.weight_emb
                    if self.bias is None
                    else torch.baddbmm(self.bias.unsqueeze(1), emb, self.weight_emb)
                )
            else:
                out = out.baddbmm_(emb, self.weight_emb)
        assert out is not None
        return out


def blocks_first(t: Tensor, n: int) -> Tensor:
    """``(R, B, n * w)`` -> ``(R, n, B, w)``: the layout of parallel blocks."""
    r, b, nw = t.shape
    return t.view(r, b, n, nw // n).transpose(1, 2).contiguous()


class ParallelLinear(nn.Module):
    """``E`` parallel linear maps for ``R`` replicas: ``(R, E|1, B, i) -> (R, E, B, o)`` in one ``baddbmm``."""

    def __init__(
        self,
        replicas: int,
        n: int,
        in_features: int,
        out_features: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.replicas, self.n, self.in_features, self.out_features = replicas, n, in_features, out_features
        self.weight = nn.Parameter(torch.empty(replicas, n, in_features, out_features, **kw))
        self.bias = nn.Parameter(torch.empty(replicas, n, out_features, **kw))

    def reset_parameters(self, generators: Sequence[torch.Generator]) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        _uniform_(self.weight, bound, generators)
        _uniform_(self.bias, bound, generators)

    def forward(self, x: Tensor) -> Tensor:
        r, n, i, o = self.weight.shape
        b = x.shape[2]
        if x.shape[1] == 1 and n > 1:
            # one input shared by every block (towers on a shared bottom, PLE's gates on one input): one product
            # against the blocks' weights side by side instead of n products over n copies of the input, whose
            # backward also writes n input gradients and sums them (for the 2048-unit bottom and two towers of 64,
            # 16 MB copied forward and 24 MB more backward per step; bench/PROFILE.md "Seventh pass")
            w = self.weight.permute(0, 2, 1, 3).reshape(r, i, n * o)
            out = torch.baddbmm(self.bias.view(r, 1, n * o), x.reshape(r, b, i), w)
            return out.view(r, b, n, o).transpose(1, 2)
        x = x.expand(r, n, b, i).reshape(r * n, b, i)
        out = torch.baddbmm(self.bias.view(r * n, 1, o), x, self.weight.view(r * n, i, o))
        return out.view(r, n, b, o)


class ParallelMLP(nn.Module):
    """``E`` parallel multilayer perceptrons with ReLU: ``(R, E|1, B, in) -> (R, E, B, widths[-1])``.

    With ``output_features`` set, a final linear layer (no activation) maps to that many outputs per block:
    that is how towers and task columns end.
    """

    def __init__(
        self,
        replicas: int,
        n: int,
        in_features: int,
        widths: Sequence[int],
        *,
        output_features: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dims = [in_features, *widths]
        self.hidden = nn.ModuleList(
            ParallelLinear(replicas, n, a, b, device=device, dtype=dtype) for a, b in itertools.pairwise(dims)
        )
        self.output: ParallelLinear | None = (
            ParallelLinear(replicas, n, dims[-1], output_features, device=device, dtype=dtype)
            if output_features is not None
            else None
        )
        self.n = n

    def linears(self) -> list[ParallelLinear]:
        """The hidden layers, typed."""
        return [m for m in self.hidden if isinstance(m, ParallelLinear)]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        if self.output is not None:
            x = self.output(x)
        return x
