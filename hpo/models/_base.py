"""The contract every architecture fulfils, and what all of them share.

A model maps a batch of :class:`Features` for ``R`` replicas to raw outputs ``(R, B, K)``: logits for binary
tasks, values for regression tasks. It reports its hidden units per depth from its modules, its parameter count
per replica, its gates' weights on a batch, an optional regularisation term (per replica), and which parameters
are shared between tasks (for loss-weighting strategies such as GradNorm).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from hpo.models._budget import Block, LayerUnits, group_layers
from hpo.models._layers import Features, InputSpec, TaskSpec

__all__ = ["GateReading", "MTLModel", "select_replicas"]


@dataclass(frozen=True)
class GateReading:
    """One gate's softmax weights on a batch: ``weights`` is ``(R, B, len(experts))``; ``experts`` names them."""

    weights: Tensor
    experts: tuple[str, ...]


class MTLModel(nn.Module, metaclass=abc.ABCMeta):
    """Base class of all architectures. Subclasses build modules in ``__init__`` and implement ``_forward``."""

    name: ClassVar[str] = ""

    def __init__(self, spec: InputSpec, tasks: Sequence[TaskSpec], replicas: int = 1) -> None:
        super().__init__()
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.spec = spec
        self.tasks = tuple(tasks)
        self.replicas = replicas

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    # -- computation -------------------------------------------------------------------------------------------
    def forward(self, x: Features) -> Tensor:
        """Raw outputs ``(R, B, K)``."""
        return self._forward(x, None)

    def forward_with_gates(self, x: Features) -> tuple[Tensor, dict[str, GateReading]]:
        """Outputs and every gate's weights on this batch (empty for models without gates)."""
        gates: dict[str, GateReading] = {}
        out = self._forward(x, gates)
        return out, gates

    @abc.abstractmethod
    def _forward(self, x: Features, gates: dict[str, GateReading] | None) -> Tensor:
        """Raw outputs; record each gate's weights in ``gates`` when it is given."""

    def regularization(self) -> Tensor | None:
        """A per-replica ``(R,)`` penalty added to the training loss, or ``None``."""
        return None

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of the last layer shared by all tasks (GradNorm's ``W``); empty when nothing is shared."""
        return []

    # -- accounting ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def hidden_blocks(self) -> Iterator[Block]:
        """Every block of hidden units with its depth, read from the built modules."""

    def layer_units(self) -> list[LayerUnits]:
        """Hidden units at every depth (the quantity the shared budget caps)."""
        return group_layers(self.hidden_blocks())

    def parameter_count(self) -> int:
        """Trainable parameters of one replica."""
        return sum(p.numel() for p in self.parameters()) // self.replicas

    # -- initialisation -------------------------------------------------------------------------------------------
    def reset_parameters(self, seeds: Sequence[int]) -> None:
        """Initialise replica ``r`` from ``seeds[r]``: replica ``r`` equals a lone model built with that seed."""
        if len(seeds) != self.replicas:
            raise ValueError(f"need one seed per replica ({self.replicas}), got {len(seeds)}")
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                getattr(module, "reset_parameters")(generators)  # noqa: B009  (modules without it are skipped)
        self._reset_own(generators)

    def _reset_own(self, generators: Sequence[torch.Generator]) -> None:
        """Initialise parameters held directly by the model (not by a submodule)."""

    def select_replicas(self, index: Sequence[int]) -> None:
        """Keep only the given replicas (in place), so that finished replicas stop costing work."""
        select_replicas(self, index)

    def extra_repr(self) -> str:
        units = ", ".join(str(layer.units) for layer in self.layer_units())
        return f"tasks={[t.name for t in self.tasks]}, replicas={self.replicas}, units_per_layer=[{units}]"


def select_replicas(
    module: nn.Module,
    index: Sequence[int],
    optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
) -> None:
    """Keep only replicas ``index`` of every parameter held by ``module`` (and of its optimisers' state).

    Buffers with a replica axis are compacted when their module lists them in ``replica_buffers``.
    Parameters are replaced by new ones rather than resized in place: autograd remembers a leaf's shape, so a
    resized leaf would break the next backward pass.
    """
    idx = torch.as_tensor(list(index), dtype=torch.long)
    remap: dict[nn.Parameter, nn.Parameter] = {}
    for m in module.modules():
        for name, p in list(m.named_parameters(recurse=False)):
            new = nn.Parameter(p.detach().index_select(0, idx.to(p.device)), requires_grad=p.requires_grad)
            setattr(m, name, new)
            remap[p] = new
        for name in getattr(m, "replica_buffers", ()):
            buf = getattr(m, name)
            setattr(m, name, buf.index_select(0, idx.to(buf.device)))
        if hasattr(m, "replicas"):
            object.__setattr__(m, "replicas", len(idx))
    optimizers = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer or [])
    for opt in optimizers:
        _remap_state(opt, remap, idx)


def _remap_state(
    optimizer: torch.optim.Optimizer, remap: dict[nn.Parameter, nn.Parameter], idx: Tensor
) -> None:
    """Point ``optimizer`` at the compacted parameters, its per-parameter state cut to the same replicas."""
    for group in optimizer.param_groups:
        group["params"] = [remap.get(p, p) for p in group["params"]]
    for old, new in remap.items():
        state = optimizer.state.pop(old, None)
        if state is None:
            continue
        optimizer.state[new] = {
            k: v.index_select(0, idx.to(v.device))
            if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == old.shape[0]
            else v
            for k, v in state.items()
        }
