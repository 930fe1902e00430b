"""The model zoo: every architecture registers itself here on import.

>>> from hpo.models import create_model, InputSpec, TaskSpec
>>> m = create_model("mmoe", InputSpec(100), [TaskSpec("a", "regression"), TaskSpec("b", "regression")])
"""

from __future__ import annotations

from hpo.models import columns, moe, ple, shared_bottom, tensor_factorization  # noqa: F401  (registration)
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
from hpo.models.utilisation import gate_utilisation

__all__ = [
    "DEFAULT_BUDGET",
    "Block",
    "Features",
    "GateReading",
    "HyperParam",
    "InputSpec",
    "LayerUnits",
    "MTLModel",
    "ModelEntry",
    "TaskSpec",
    "check_budget",
    "create_model",
    "gate_utilisation",
    "get_entry",
    "list_models",
    "probe_model",
    "register_model",
]
