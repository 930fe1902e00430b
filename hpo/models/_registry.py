"""The model registry: ``register_model`` on each architecture, ``create_model(name, ...)`` to build one.

Each entry carries the architecture's description and its tunable hyperparameters, so that the CLI, the search
spaces and the tests are driven from one list. Building goes through the meta device first: the budget is checked
on the built (but unallocated) modules, so an oversized configuration is refused before any memory is taken.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from hpo.errors import ConfigError
from hpo.models._base import MTLModel
from hpo.models._budget import DEFAULT_BUDGET, check_budget
from hpo.models._layers import InputSpec, TaskSpec

__all__ = [
    "HyperParam",
    "ModelEntry",
    "create_model",
    "get_entry",
    "list_models",
    "probe_model",
    "register_model",
]


@dataclass(frozen=True)
class HyperParam:
    """A constructor argument of an architecture that a search space may tune."""

    name: str
    type: str
    default: Any
    help: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[MTLModel]
    description: str
    params: tuple[HyperParam, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": [dataclasses.asdict(p) for p in self.params],
        }


_REGISTRY: dict[str, ModelEntry] = {}
M = TypeVar("M", bound=type[MTLModel])


def register_model(name: str, description: str, params: Mapping[str, str]) -> Callable[[M], M]:
    """Class decorator: register an architecture under ``name`` with help text for each tunable parameter.

    The parameters' types and defaults are read from the constructor's keyword-only arguments, so they cannot
    drift from the code.
    """

    def deco(cls: M) -> M:
        sig = inspect.signature(cls.__init__)
        hps = []
        for pname, help_text in params.items():
            if pname not in sig.parameters:
                raise TypeError(f"{cls.__name__} has no constructor argument {pname!r}")
            p = sig.parameters[pname]
            hps.append(HyperParam(pname, str(p.annotation), p.default, help_text))
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, cls, description, tuple(hps))
        cls.name = name
        return cls

    return deco


def list_models() -> list[ModelEntry]:
    return list(_REGISTRY.values())


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}") from None


def probe_model(
    name: str,
    spec: InputSpec,
    tasks: Sequence[TaskSpec],
    *,
    budget: int | None = DEFAULT_BUDGET,
    **hyper: Any,
) -> MTLModel:
    """Build ``name`` on the meta device (no memory), refusing bad or over-budget configurations."""
    entry = get_entry(name)
    valid = {p.name for p in entry.params}
    unknown = sorted(set(hyper) - valid)
    if unknown:
        raise ConfigError(f"model {name}: unknown parameter(s) {unknown}; valid: {sorted(valid)}")
    try:
        probe = entry.cls(spec, tasks, 1, device="meta", **hyper)  # type: ignore[call-arg]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model {name}: {exc}") from None
    if budget is not None:
        check_budget(probe.layer_units(), budget, model=name)
    return probe


def create_model(
    name: str,
    spec: InputSpec,
    tasks: Sequence[TaskSpec],
    *,
    replicas: int = 1,
    seeds: Sequence[int] | None = None,
    budget: int | None = DEFAULT_BUDGET,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    **hyper: Any,
) -> MTLModel:
    """Build architecture ``name`` for ``spec`` and ``tasks``, checked against ``budget`` units per layer.

    ``seeds`` (one per replica; default ``0 .. R-1``) initialise the weights; replica ``r`` equals a lone model
    built with ``seeds=[seeds[r]]``. Unknown hyperparameters are refused with the list of valid ones.
    """
    entry = get_entry(name)
    probe_model(name, spec, tasks, budget=budget, **hyper)
    model = entry.cls(spec, tasks, replicas, dtype=dtype, **hyper)  # type: ignore[call-arg]
    model.reset_parameters(list(seeds) if seeds is not None else list(range(replicas)))
    return model.to(device)
