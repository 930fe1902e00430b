"""The any-module route: a plain ``torch.nn.Module`` as an hpo architecture, many seeds trained as one model.

The contract, for a class registered with :func:`register_module`:

* ``__init__(self, spec: InputSpec, tasks: Sequence[TaskSpec], *, <hyperparameters>)``: the hyperparameters are
  keyword-only with defaults; PyTorch's default initialisation (or the module's own) is used as it is;
* ``forward(self, x: Features)``: ``x.cont`` is ``(batch, spec.n_continuous)`` floats or None, ``x.cat`` is
  ``(batch, spec.n_code_columns)`` integer codes or None: first the categorical columns' codes into one
  vocabulary of ``spec.vocab_size`` rows, then each sparse field's (``spec.sparse``: ``slots`` columns of codes
  local to the field, -1 for an empty slot; the module embeds them itself, with ``nn.Embedding``); it
  returns a ``(batch, len(tasks))`` tensor, or one ``(batch,)``/``(batch, 1)`` tensor per task (logits for
  binary tasks, values for regression tasks).

How hpo runs it: replica ``r`` is the module constructed under ``torch.manual_seed(seeds[r])`` (so it equals a
lone run with that seed); the replicas' parameters are stacked on a leading axis and one template module (on
the meta device, holding no memory) is evaluated with each replica's parameters by ``torch.func.functional_call``
under ``torch.func.vmap``. BatchNorm is refused: its running statistics are updated in place, which ``vmap``
cannot batch (use LayerNorm, or the fused route).

Hidden units per depth are read from the module's ``nn.Linear`` layers by tracing one forward pass on the meta
device: a layer's depth is the number of ``nn.Linear`` layers on the longest path from the input to it, itself
included, and the layers that produce an output (the task heads) are not hidden. Every other ``nn.Linear``
counts, gate logits included, unless the module names such layers in ``not_hidden`` (submodule name prefixes)
or declares ``hidden_units(self) -> list[int]`` (units at depth 1, 2, ...). A module with parameters outside
``nn.Linear``, ``nn.Embedding``/``nn.EmbeddingBag`` and ``nn.LayerNorm`` must declare ``hidden_units``: hpo
cannot know what such parameters compute, and says so in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from hpo.models._base import GateReading, MTLModel
from hpo.models._budget import Block
from hpo.models._layers import Features, InputSpec, TaskSpec
from hpo.models._registry import ModelEntry, add_entry, hyperparams

__all__ = ["ModuleReplicas", "register_module"]

COUNTED = (nn.Linear,)
NEUTRAL = (nn.Linear, nn.Embedding, nn.EmbeddingBag, nn.LayerNorm)
PROBE_BATCH = 3

T = TypeVar("T", bound=type[nn.Module])


def register_module(name: str, description: str, params: Mapping[str, str]) -> Callable[[T], T]:
    """Class decorator: register a plain ``nn.Module`` (see the module docstring for its contract) under
    ``name``, with help text for each tunable keyword-only constructor argument."""

    def deco(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"@register_module({name!r}) decorates a torch.nn.Module subclass, not {cls!r}")
        wrapper = type(
            f"{cls.__name__}Replicas",
            (ModuleReplicas,),
            {"module_cls": cls, "__doc__": cls.__doc__, "__module__": cls.__module__, "name": name},
        )
        add_entry(ModelEntry(name, wrapper, description, hyperparams(cls, params), route="module"))
        return cls

    return deco


def _key(name: str) -> str:
    return name.replace(".", "__")


class ModuleReplicas(MTLModel):
    """``R`` seeds of a plain module as one :class:`MTLModel` (parameters stacked on a leading replica axis)."""

    module_cls: ClassVar[type[nn.Module]]

    def __init__(
        self,
        spec: InputSpec,
        tasks: Sequence[TaskSpec],
        replicas: int = 1,
        *,
        device: Any = None,
        dtype: Any = None,
        **hyper: Any,
    ) -> None:
        super().__init__(spec, tasks, replicas)
        self.hyper = dict(hyper)
        with torch.device("meta"):
            template = self.module_cls(spec, tasks, **hyper)
        batchnorm = [n for n, m in template.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if batchnorm:
            raise ValueError(
                f"{self.module_cls.__name__}: BatchNorm layers {batchnorm} update running statistics in place, "
                "which torch.func.vmap cannot batch; use nn.LayerNorm or the fused route"
            )
        self._template = [template]  # a list, so that it is not a submodule: its meta tensors are never used
        self.param_names = [n for n, _ in template.named_parameters()]
        self.buffer_names = [n for n, _ in template.named_buffers()]
        self.stacked = nn.ParameterDict(
            {
                _key(n): nn.Parameter(torch.empty(replicas, *p.shape, device=device, dtype=dtype or p.dtype))
                for n, p in template.named_parameters()
            }
        )
        for n, b in template.named_buffers():
            self.register_buffer(
                f"buffer__{_key(n)}", torch.zeros(replicas, *b.shape, device=device, dtype=b.dtype)
            )
        self.replica_buffers = tuple(f"buffer__{_key(n)}" for n in self.buffer_names)
        self._blocks: list[Block] | None = None

    def train(self, mode: bool = True) -> ModuleReplicas:
        """Train/eval mode reaches the template too (dropout and the like read it inside ``functional_call``)."""
        super().train(mode)
        self._template[0].train(mode)
        return self

    # -- initialisation ------------------------------------------------------------------------------------------
    def reset_parameters(self, seeds: Sequence[int]) -> None:
        """Replica ``r`` is the module as its own constructor initialises it under ``torch.manual_seed(seeds[r])``."""
        if len(seeds) != self.replicas:
            raise ValueError(f"need one seed per replica ({self.replicas}), got {len(seeds)}")
        if any(p.is_meta for p in self.stacked.values()):
            return
        for r, seed in enumerate(seeds):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                instance = self.module_cls(self.spec, self.tasks, **self.hyper)
            with torch.no_grad():
                for n, p in instance.named_parameters():
                    self.stacked[_key(n)][r].copy_(p)
                for n, b in instance.named_buffers():
                    getattr(self, f"buffer__{_key(n)}")[r].copy_(b)

    # -- computation ---------------------------------------------------------------------------------------------
    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        template, r = self._template[0], self.replicas
        params = {n: self.stacked[_key(n)] for n in self.param_names}
        buffers = {n: getattr(self, f"buffer__{_key(n)}") for n in self.buffer_names}
        n_tasks = self.n_tasks

        def one(
            p: dict[str, Tensor], b: dict[str, Tensor], cont: Tensor | None, cat: Tensor | None
        ) -> Tensor:
            out = torch.func.functional_call(template, {**p, **b}, (Features(cont, cat),))
            return as_outputs(out, n_tasks, type(template).__name__)

        def per_replica(t: Tensor | None) -> tuple[Tensor | None, int | None]:
            if t is None:
                return None, None
            return (t, 0) if t.shape[0] == r else (t[0], None)

        cont, dc = per_replica(x.cont)
        cat, dk = per_replica(x.cat)
        out: Tensor = torch.func.vmap(one, in_dims=(0, 0, dc, dk), randomness="different")(
            params, buffers, cont, cat
        )
        return out

    # -- accounting ----------------------------------------------------------------------------------------------
    def hidden_blocks(self) -> Iterator[Block]:
        if self._blocks is None:
            self._blocks = count_hidden_units(self._template[0], self.spec, self.n_tasks)
        yield from self._blocks


def as_outputs(out: Any, n_tasks: int, owner: str) -> Tensor:
    """``(batch, K)`` from what a module's forward returned, or a ValueError saying what was expected."""
    if isinstance(out, Tensor) and out.dim() == 2 and out.shape[1] == n_tasks:
        return out
    if isinstance(out, Tensor) and out.dim() == 3 and out.shape[1:] == (n_tasks, 1):
        return out[..., 0]
    if isinstance(out, (list, tuple)) and len(out) == n_tasks and all(isinstance(o, Tensor) for o in out):
        cols = [o[:, 0] if o.dim() == 2 and o.shape[1] == 1 else o for o in out]
        if all(c.dim() == 1 for c in cols):
            return torch.stack(cols, dim=1)
    got = (
        f"a tensor of shape {tuple(out.shape)}"
        if isinstance(out, Tensor)
        else f"{type(out).__name__} of {len(out)}"
        if isinstance(out, (list, tuple))
        else type(out).__name__
    )
    raise ValueError(
        f"{owner}.forward returned {got}; expected a (batch, {n_tasks}) tensor or {n_tasks} tensors of shape "
        "(batch,) or (batch, 1), one per task"
    )


class _Depths(TorchFunctionMode):
    """Propagates, for every tensor computed in a forward pass, its depth (nn.Linear layers on the longest path
    from the input) and the last nn.Linear layers that produced it."""

    def __init__(self) -> None:
        super().__init__()
        self.depth: dict[int, int] = {}
        self.last: dict[int, frozenset[int]] = {}
        self.keep: list[Tensor] = []  # holds every tracked tensor alive, so that ids are never reused

    def mark(self, t: Tensor, depth: int, last: frozenset[int]) -> None:
        self.depth[id(t)], self.last[id(t)] = depth, last
        self.keep.append(t)

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        seen = [
            a for a in tree_flatten((args, kwargs or {}))[0] if isinstance(a, Tensor) and id(a) in self.depth
        ]
        depth = max((self.depth[id(a)] for a in seen), default=0)
        last = frozenset().union(*(self.last[id(a)] for a in seen))
        for o in tree_flatten(out)[0]:
            if isinstance(o, Tensor):
                self.mark(o, depth, last)
        return out


def _declared(module: nn.Module) -> list[Block] | None:
    declared = getattr(module, "hidden_units", None)
    if not callable(declared):
        return None
    units = list(declared())
    if not units or not all(isinstance(u, int) and u > 0 for u in units):
        raise ValueError(
            f"{type(module).__name__}.hidden_units() must return positive integers, got {units!r}"
        )
    return [Block(d, "declared", 1, u) for d, u in enumerate(units, start=1)]


def _uncountable(module: nn.Module) -> list[str]:
    return [
        f"{name}.{pname}" if name else pname
        for name, m in module.named_modules()
        if not isinstance(m, NEUTRAL)
        for pname, _ in m.named_parameters(recurse=False)
    ]


def count_hidden_units(module: nn.Module, spec: InputSpec, n_tasks: int) -> list[Block]:
    """Hidden units per depth of a plain module (see the module docstring), traced on the meta device."""
    if (declared := _declared(module)) is not None:
        return declared
    owner = type(module).__name__
    hint = "declare `def hidden_units(self) -> list[int]` (its hidden units at depth 1, 2, ...)"
    if uncountable := _uncountable(module):
        raise ValueError(
            f"{owner}: hpo counts hidden units from nn.Linear layers, but {uncountable} are not; {hint}"
        )
    mode, seen = _Depths(), []
    skip = tuple(getattr(module, "not_hidden", ()))

    def hook(layer: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        depth = mode.depth.get(id(inputs[0]), 0) + 1
        mode.mark(output, depth, frozenset({id(layer)}))
        seen.append((layer, depth))

    names = {id(m): n for n, m in module.named_modules()}
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, COUNTED)]
    cont = torch.zeros(PROBE_BATCH, spec.n_continuous, device="meta") if spec.n_continuous else None
    cat = (
        torch.zeros(PROBE_BATCH, spec.n_code_columns, dtype=torch.long, device="meta")
        if spec.n_code_columns
        else None
    )
    try:
        with mode:
            for t in (cont, cat):
                if t is not None:
                    mode.mark(t, 0, frozenset())
            out = module(Features(cont, cat))
    finally:
        for h in handles:
            h.remove()
    outputs = as_outputs(out, n_tasks, owner)
    heads = set().union(*(mode.last.get(id(o), frozenset()) for o in tree_flatten(out)[0] + [outputs]))
    blocks, counted = [], set()
    for layer, depth in seen:
        name = names.get(id(layer), "")
        if id(layer) in heads or (id(layer), depth) in counted or (skip and name.startswith(skip)):
            continue
        counted.add((id(layer), depth))
        blocks.append(Block(depth, name, 1, int(getattr(layer, "out_features"))))  # noqa: B009
    if not blocks:
        raise ValueError(
            f"{owner}: no hidden nn.Linear layer found between the input and the outputs; {hint}"
        )
    return blocks
