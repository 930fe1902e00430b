"""The shared hidden-unit budget (docs/science.md, "The budget"), checked in this one place.

At every depth, the units of all parallel blocks at that depth (experts, task columns, task-specific plus shared
experts, towers) add up to at most ``cap`` (2048 by default). Models report their units from their built modules;
this module only adds them up and judges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hpo.errors import BudgetError

__all__ = ["DEFAULT_BUDGET", "Block", "LayerUnits", "check_budget", "group_layers"]

DEFAULT_BUDGET = 2048


@dataclass(frozen=True)
class Block:
    """``n`` parallel blocks of ``width`` hidden units at one depth (e.g. 8 experts of 16 units at depth 1)."""

    depth: int
    name: str
    n: int
    width: int

    @property
    def units(self) -> int:
        return self.n * self.width


@dataclass(frozen=True)
class LayerUnits:
    """All hidden units at one depth, with the blocks they come from."""

    depth: int
    units: int
    blocks: tuple[Block, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        return " + ".join(f"{b.name} {b.n}x{b.width}" for b in self.blocks)


def group_layers(blocks: Iterable[Block]) -> list[LayerUnits]:
    """Group blocks by depth and add up their units, shallowest first."""
    by_depth: dict[int, list[Block]] = {}
    for b in blocks:
        by_depth.setdefault(b.depth, []).append(b)
    return [LayerUnits(d, sum(b.units for b in bs), tuple(bs)) for d, bs in sorted(by_depth.items())]


def check_budget(layers: Iterable[LayerUnits], cap: int = DEFAULT_BUDGET, *, model: str = "model") -> None:
    """Raise :class:`BudgetError` naming the first layer whose units exceed ``cap``."""
    for layer in layers:
        if layer.units > cap:
            raise BudgetError(
                f"{model}: hidden layer {layer.depth} has {layer.units} units ({layer.describe()}), "
                f"over the budget of {cap} units per layer"
            )
