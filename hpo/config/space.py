"""Search spaces with the budget built in.

A search space is YAML: ``params`` are sampled quantities, each with a range that is the same in every trial (so
that Optuna's GP sampler models every dimension: it samples at random any parameter whose range changes between
trials); ``model`` maps each model hyperparameter to an expression over the sampled values and ``n_tasks``. Widths
are derived (``layer_units // n_experts``), never searched directly, so no configuration the sampler can propose
exceeds the budget when the ranges' upper ends respect it; :func:`check_space` proves that by building the
worst cases and a sample of configurations on the meta device.

.. code-block:: yaml

    architecture: mmoe
    params:
      layer_units: {type: int, low: 16, high: 2048, log: true}   # all experts of a layer together
      n_experts: {type: int, low: 2, high: 16}
      tower_units: {type: int, low: 2, high: 1024, log: true}    # all towers together
    model:
      n_experts: n_experts
      expert_units: "[max(1, layer_units // n_experts)]"
      tower_units: "[max(1, tower_units // n_tasks)]"

Expressions allow numbers, the sampled names, ``n_tasks``, ``+ - * / // %``, lists, and ``min``, ``max``, ``int``,
``round``; nothing else is evaluated.

A numeric parameter may say ``expand: true`` (or ``expand: {low: L, high: H}``, the farthest it may go): when the
best configuration of a tuning study sits on one of its bounds, the range is widened on that side
(:meth:`ParamRange.widened`) and the widening recorded on the study, instead of the range deciding the optimum.
"""

from __future__ import annotations

import ast
import math
import operator
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hpo.errors import ConfigError
from hpo.yamlio import format_validation_error, read_yaml

__all__ = ["ExpandLimits", "ParamRange", "SearchSpace", "evaluate", "load_space"]


class ExpandLimits(BaseModel):
    """How far ``expand`` may widen a range; ``None`` keeps the default limit of that side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float | None = None
    high: float | None = None


class ParamRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    expand: bool | ExpandLimits = False

    @model_validator(mode="after")
    def _consistent(self) -> ParamRange:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`")
            if self.expand is not False:
                raise ValueError("`expand` widens int and float ranges; a categorical parameter has none")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs `low` and `high`")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled range needs low > 0, got {self.low}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int range needs integer bounds, got {self.low}..{self.high}")
        if isinstance(self.expand, ExpandLimits):
            if self.expand.low is not None and self.expand.low > self.low:
                raise ValueError(f"expand.low ({self.expand.low}) must not exceed low ({self.low})")
            if self.expand.high is not None and self.expand.high < self.high:
                raise ValueError(f"expand.high ({self.expand.high}) must not be below high ({self.high})")
            if self.log and self.expand.low is not None and self.expand.low <= 0:
                raise ValueError(
                    f"a log-scaled range cannot widen to low <= 0 (expand.low {self.expand.low})"
                )
        return self

    def expandable(self) -> bool:
        return self.type != "categorical" and self.expand is not False

    def limits(self, name: str, budget: int) -> tuple[float, float]:
        """The farthest ``expand`` may move each bound: the declared limits, else a range never changes sign
        (an int count at 1 or more stays at 1 or more), and a ``*units*`` integer stops at the ``budget``."""
        assert self.low is not None and self.high is not None
        given = self.expand if isinstance(self.expand, ExpandLimits) else ExpandLimits()
        low, high = given.low, given.high
        if low is None:
            low = (1.0 if self.type == "int" and self.low >= 1 else 0.0) if self.low >= 0 else -math.inf
        if high is None and self.high <= 0:
            high = 0.0
        elif high is None:
            high = max(float(budget), self.high) if self.type == "int" and "units" in name else math.inf
        return low, high

    def widened(self, side: Literal["low", "high"], name: str, budget: int) -> ParamRange | None:
        """This range widened on ``side``: a log-scaled bound halves or doubles, a linear one moves by half the
        span (a whole number of steps), never past :meth:`limits`; ``None`` when it cannot move."""
        assert self.low is not None and self.high is not None
        lo_limit, hi_limit = self.limits(name, budget)
        step = float(self.step or (1 if self.type == "int" else 0))
        if self.log:
            moved = self.low / 2 if side == "low" else self.high * 2
        else:
            delta = (self.high - self.low) / 2
            if step:
                delta = max(step, math.ceil(delta / step) * step)
            moved = self.low - delta if side == "low" else self.high + delta
        if self.type == "int":
            moved = math.floor(moved) if side == "low" else math.ceil(moved)
        moved = max(lo_limit, moved) if side == "low" else min(hi_limit, moved)
        if step and not self.log:  # a limit may cut between steps: keep whole steps from the other end
            anchor = self.low if side == "high" else self.high
            moved = anchor + math.floor(abs(moved - anchor) / step + 1e-9) * step * (
                1 if side == "high" else -1
            )
        if (side == "low" and moved >= self.low) or (side == "high" and moved <= self.high):
            return None
        if self.log and moved <= 0:
            return None
        return self.model_copy(update={side: float(moved)})

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.type == "categorical":
            assert self.choices is not None
            return optuna.distributions.CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def extremes(self) -> list[Any]:
        if self.type == "categorical":
            assert self.choices is not None
            return list(self.choices)
        assert self.low is not None and self.high is not None
        cast: Callable[[float], Any] = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def random(self, rng: random.Random) -> Any:
        if self.type == "categorical":
            assert self.choices is not None
            return rng.choice(self.choices)
        assert self.low is not None and self.high is not None
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            v = rng.uniform(self.low, self.high)
        return min(int(self.high), max(int(self.low), round(v))) if self.type == "int" else v


class SearchSpace(BaseModel):
    """Sampled parameters with fixed ranges, and how the model's hyperparameters derive from them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: str | None = None
    params: dict[str, ParamRange] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    source: str = ""

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, r in self.params.items():
            if r.type == "categorical":
                assert r.choices is not None
                out[name] = trial.suggest_categorical(name, r.choices)
            elif r.type == "int":
                assert r.low is not None and r.high is not None
                out[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log, step=int(r.step or 1))
            else:
                assert r.low is not None and r.high is not None
                out[name] = trial.suggest_float(name, r.low, r.high, log=r.log, step=r.step)
        return out

    def with_ranges(self, ranges: Mapping[str, tuple[float, float]]) -> SearchSpace:
        """This space with the named parameters' ``(low, high)`` replaced (a widening recorded on a study);
        names of other spaces are ignored."""
        params = {
            name: r.model_copy(update=dict(zip(("low", "high"), ranges[name], strict=True)))
            if name in ranges
            else r
            for name, r in self.params.items()
        }
        return self.model_copy(update={"params": params})

    def derive(self, sampled: Mapping[str, Any], n_tasks: int) -> dict[str, Any]:
        """Model hyperparameters from sampled values (lists become tuples)."""
        env = {**sampled, "n_tasks": n_tasks}
        out = {}
        for key, expr in self.model.items():
            value = evaluate(expr, env, f"{self.source}: model.{key}")
            out[key] = tuple(value) if isinstance(value, list) else value
        return out


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "int": int, "round": round}


class _Evaluator:
    """A walk over a parsed derivation that allows numbers, names of ``env``, arithmetic, lists and a few
    functions, and nothing else (no attribute access, no calls of arbitrary names)."""

    def __init__(self, env: Mapping[str, Any], where: str, expr: str) -> None:
        self.env, self.where, self.expr = env, where, expr

    def __call__(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return self(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](self(node.left), self(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self(node.operand)
        if isinstance(node, ast.List | ast.Tuple):
            return [self(e) for e in node.elts]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            return _FUNCS[node.func.id](*[self(a) for a in node.args])
        raise ConfigError(
            f"{self.where}: {self.expr!r} uses something other than numbers, names, arithmetic, lists, "
            "min/max/int/round"
        )

    def name(self, name: str) -> Any:
        if name not in self.env:
            raise ConfigError(
                f"{self.where}: unknown name {name!r} in {self.expr!r}; known: {sorted(self.env)}"
            )
        return self.env[name]


def evaluate(expr: Any, env: Mapping[str, Any], where: str) -> Any:
    """Evaluate a derivation: a literal, a name, or a restricted arithmetic expression over ``env``."""
    if isinstance(expr, bool | int | float) or expr is None:
        return expr
    if isinstance(expr, list):
        return [evaluate(e, env, where) for e in expr]
    if not isinstance(expr, str):
        raise ConfigError(f"{where}: expected a number, a list or an expression, got {expr!r}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ConfigError(f"{where}: {expr!r} is not a valid expression") from None
    try:
        return _Evaluator(env, where, expr)(tree)
    except (ZeroDivisionError, TypeError) as exc:
        raise ConfigError(f"{where}: {expr!r} cannot be evaluated ({exc})") from None


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    raw = read_yaml(path)
    try:
        return SearchSpace.model_validate({**raw, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
