"""The model zoo: every architecture registers itself here on import.

>>> from hpo.models import create_model, InputSpec, TaskSpec
>>> m = create_model("mmoe", InputSpec(100), [TaskSpec("a", "regression"), TaskSpec("b", "regression")])
"""

from __future__ import annotations

from hpo.models import adatt, aitm, api, columns, esmm, moe, ple, shared_bottom, tensor_factorization  # noqa: F401  (registration)
from hpo.models._budget import check_budget
from hpo.models._native import kernel_provenance
from hpo.models._registry import FIELD_DIM, INPUT_SETTINGS, create_model, get_entry, list_models, probe_model
from hpo.models.api import *  # noqa: F403  (the extension API: one list of names, api.__all__)
from hpo.models.plugins import load_plugins
from hpo.models.utilisation import gate_utilisation

__all__ = [
    *api.__all__,
    "FIELD_DIM",
    "INPUT_SETTINGS",
    "check_budget",
    "create_model",
    "gate_utilisation",
    "kernel_provenance",
    "get_entry",
    "list_models",
    "load_plugins",
    "probe_model",
]
