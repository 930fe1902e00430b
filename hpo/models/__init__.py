"""The model zoo: every architecture registers itself here on import.

>>> from hpo.models import create_model, InputSpec, TaskSpec
>>> m = create_model("mmoe", InputSpec(100), [TaskSpec("a", "regression"), TaskSpec("b", "regression")])
"""

from __future__ import annotations

from hpo.models import adatt, columns, moe, ple, shared_bottom, tensor_factorization  # noqa: F401  (registration)
from hpo.models._base import GateReading, MTLModel
from hpo.models._budget import DEFAULT_BUDGET, Block, LayerUnits, check_budget
from hpo.models._layers import Features, InputSpec, TaskSpec
from hpo.models._registry import (
    HyperParam,
    ModelEntry,
    create_model,
    get_entry,
    list_models,
    probe_model,
    register_model,
)
from hpo.models.api import (
    InputLayer,
    ParallelLinear,
    ParallelMLP,
    Part,
    blocks_first,
    check_positive,
    check_widths,
    factory_kwargs,
    init_uniform,
    mix,
    mlp_blocks,
    tower_outputs,
)
from hpo.models.plugins import load_plugins
from hpo.models.utilisation import gate_utilisation
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
    "check_budget",
    "check_positive",
    "check_widths",
    "create_model",
    "factory_kwargs",
    "gate_utilisation",
    "get_entry",
    "init_uniform",
    "list_models",
    "load_plugins",
    "mix",
    "mlp_blocks",
    "probe_model",
    "register_model",
    "register_module",
    "tower_outputs",
]
