"""The stable extension API: everything an architecture written outside hpo (or AdaTT, inside it) may use.

Two routes (README, "Your own architecture"; worked examples in ``examples/plugins/``):

* **fused**: subclass :class:`MTLModel`, read the input through one :class:`InputLayer` split into :class:`Part` s,
  run parallel blocks with :class:`ParallelMLP`/:class:`ParallelLinear` (every tensor carries a leading replica
  axis), report hidden units from the built modules in ``hidden_blocks``, and register with
  :func:`register_model`. Many seeds train as one model and the budget is accounted from the modules.
* **any module**: a plain ``torch.nn.Module`` registered with :func:`register_module`; hpo runs its seeds at once
  through ``torch.func`` and counts its hidden units from its ``nn.Linear`` layers.

Names here keep their meaning across releases; anything imported from a private module (``hpo.models._*``) may
change without notice.
"""

from __future__ import annotations

from hpo.models._base import GateReading, MTLModel
from hpo.models._budget import DEFAULT_BUDGET, Block, LayerUnits
from hpo.models._common import (
    check_positive,
    check_widths,
    factory_kwargs,
    gate_softmax,
    mix,
    mlp_blocks,
    tower_outputs,
)
from hpo.models._layers import (
    Features,
    InputLayer,
    InputSpec,
    ParallelLinear,
    ParallelMLP,
    Part,
    TaskSpec,
    blocks_first,
)
from hpo.models._layers import _uniform_ as init_uniform
from hpo.models._registry import HyperParam, ModelEntry, register_model
from hpo.models.wrapped import register_module

__all__ = [
    "DEFAULT_BUDGET",
    "Block",
    "Features",
    "GateReading",
    "HyperParam",
    "InputLayer",
    "InputSpec",
    "LayerUnits",
    "MTLModel",
    "ModelEntry",
    "ParallelLinear",
    "ParallelMLP",
    "Part",
    "TaskSpec",
    "blocks_first",
    "check_positive",
    "check_widths",
    "factory_kwargs",
    "gate_softmax",
    "init_uniform",
    "mix",
    "mlp_blocks",
    "register_model",
    "register_module",
    "tower_outputs",
]
