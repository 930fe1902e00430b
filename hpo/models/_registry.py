"""The model registry: ``register_model`` on each architecture, ``create_model(name, ...)`` to build one.

Each entry carries the architecture's description and its tunable hyperparameters, so that the CLI, the search
spaces and the tests are driven from one list. Building goes through the meta device first: the budget is checked
on the built (but unallocated) modules, so an oversized configuration is refused before any memory is taken.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
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
    """A registered architecture. ``origin`` says where it comes from: ``built-in``, or a plugin's file (with its
    SHA-256) or package (with its version), recorded on every trial and in the report."""

    name: str
    cls: type[MTLModel]
    description: str
    params: tuple[HyperParam, ...]
    origin: str = "built-in"
    route: str = "fused"  # "fused": hpo's building blocks; "module": a plain nn.Module run under torch.func

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": [dataclasses.asdict(p) for p in self.params],
            "origin": self.origin,
            "route": self.route,
        }


_REGISTRY: dict[str, ModelEntry] = {}
M = TypeVar("M", bound=type[MTLModel])
# set by hpo.models.plugins while it imports a plugin, so that what the plugin registers records where it came from
_ORIGIN: list[str] = []
# installed by hpo.models.plugins on import (the registry sits below it, so it cannot import it): imports every
# installed package's entry point, once, and returns the ones that failed to load
_DISCOVER: list[Callable[[], list[str]]] = []
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def hyperparams(owner: type, params: Mapping[str, str]) -> tuple[HyperParam, ...]:
    """The tunable parameters, typed and defaulted from ``owner``'s constructor so they cannot drift from it."""
    sig = inspect.signature(owner.__init__)  # type: ignore[misc]
    hps = []
    for pname, help_text in params.items():
        if pname not in sig.parameters:
            raise TypeError(f"{owner.__name__} has no constructor argument {pname!r}")
        p = sig.parameters[pname]
        hps.append(HyperParam(pname, str(p.annotation), p.default, help_text))
    return tuple(hps)


def add_entry(entry: ModelEntry) -> None:
    """Register ``entry``; a name that is taken (a built-in's, or another plugin's) is refused in one line."""
    if not NAME_PATTERN.match(entry.name):
        raise ConfigError(
            f"model name {entry.name!r}: use lower-case letters, digits and underscores, starting with a letter"
        )
    if entry.name in _REGISTRY:
        taken = _REGISTRY[entry.name]
        what = "a built-in architecture" if taken.origin == "built-in" else f"the model from {taken.origin}"
        raise ConfigError(f"model name {entry.name!r} clashes with {what}; register it under another name")
    _REGISTRY[entry.name] = dataclasses.replace(entry, origin=_ORIGIN[-1] if _ORIGIN else entry.origin)


def register_model(name: str, description: str, params: Mapping[str, str]) -> Callable[[M], M]:
    """Class decorator: register an :class:`MTLModel` subclass (hpo's fused building blocks) under ``name`` with
    help text for each tunable parameter (keyword-only constructor arguments)."""

    def deco(cls: M) -> M:
        add_entry(ModelEntry(name, cls, description, hyperparams(cls, params)))
        cls.name = name
        return cls

    return deco


def _discover() -> list[str]:
    """Models that installed packages declare, registered before any lookup; the failures, one line each."""
    return [failure for discover in _DISCOVER for failure in discover()]


def list_models() -> list[ModelEntry]:
    _discover()
    return list(_REGISTRY.values())


def get_entry(name: str) -> ModelEntry:
    failures = _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        failed = "".join(f"; {f}" for f in failures)
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}{failed}") from None


FIELD_DIM = "field_dim"  # the model setting every architecture takes: the sparse fields' embedding width
# optimiser-space parameters that shape the model's input rather than its training: sampled once per trial for
# every architecture (study-wide), they reach the model with its own hyperparameters (and are stored with them)
INPUT_SETTINGS = (FIELD_DIM,)


def with_field_dim(spec: InputSpec, hyper: dict[str, Any], name: str) -> tuple[InputSpec, dict[str, Any]]:
    """``spec`` with ``hyper``'s ``field_dim`` applied to its sparse fields, and the other hyperparameters."""
    if FIELD_DIM not in hyper:
        return spec, hyper
    rest = {k: v for k, v in hyper.items() if k != FIELD_DIM}
    try:
        return spec.with_field_dim(hyper[FIELD_DIM]), rest
    except ValueError as exc:
        raise ConfigError(f"model {name}: {exc}") from None


def probe_model(
    name: str,
    spec: InputSpec,
    tasks: Sequence[TaskSpec],
    *,
    budget: int | None = DEFAULT_BUDGET,
    **hyper: Any,
) -> MTLModel:
    """Build ``name`` on the meta device (no memory), refusing bad or over-budget configurations.

    ``field_dim`` (any architecture, :data:`FIELD_DIM`) sets the embedding width of the input's sparse fields
    that fix none: an input setting every architecture shares, not one of the architecture's own parameters."""
    entry = get_entry(name)
    spec, hyper = with_field_dim(spec, hyper, name)
    valid = {p.name for p in entry.params}
    unknown = sorted(set(hyper) - valid)
    if unknown:
        raise ConfigError(
            f"model {name}: unknown parameter(s) {unknown}; valid: {sorted(valid | {FIELD_DIM})}"
        )
    # a plugin's constructor may fail in any way; a built-in's only with ValueError/TypeError (anything else in
    # a built-in is a bug and keeps its traceback)
    caught: tuple[type[BaseException], ...] = (
        (ValueError, TypeError) if entry.origin == "built-in" else (Exception,)
    )
    where = "" if entry.origin == "built-in" else f" ({entry.origin})"
    try:
        probe = entry.cls(spec, tasks, 1, device="meta", **hyper)  # type: ignore[call-arg]
        layers = probe.layer_units()
        if entry.origin != "built-in":
            _check_outputs(probe, spec, len(tasks))
    except ConfigError as exc:
        raise ConfigError(f"model {name}{where}: {exc}") from None
    except caught as exc:
        if entry.origin == "built-in":
            raise ConfigError(f"model {name}: {exc}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"model {name}{where}: {hyper} rejected: {type(exc).__name__}: {first}") from None
    if budget is not None:
        check_budget(layers, budget, model=name)
    return probe


def _check_outputs(probe: MTLModel, spec: InputSpec, n_tasks: int, batch: int = 3) -> None:
    """A plugin's forward on the meta device must give ``(replicas, batch, tasks)``."""
    from hpo.models._layers import Features

    cont = torch.zeros(1, batch, spec.n_continuous, device="meta") if spec.n_continuous else None
    cat = (
        torch.zeros(1, batch, spec.n_code_columns, dtype=torch.long, device="meta")
        if spec.n_code_columns
        else None
    )
    out = probe(Features(cont, cat))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, batch, n_tasks):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"forward returned {got}; expected (replicas, batch, tasks) = (1, {batch}, {n_tasks})"
        )


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
    spec, hyper = with_field_dim(spec, hyper, name)
    model = entry.cls(spec, tasks, replicas, dtype=dtype, **hyper)  # type: ignore[call-arg]
    model.reset_parameters(list(seeds) if seeds is not None else list(range(replicas)))
    return model.to(device)
