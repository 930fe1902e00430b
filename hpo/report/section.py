"""What a section of the study report is: a unit that computes its tables from the report's data, then renders.

A section is two steps, kept apart as Optuna's plots keep computing a frame apart from drawing it:

* ``tables(ctx)`` returns the section's tables by CSV name (``{"variance": frame}`` is written as
  ``<stem>_variance.csv``; an empty frame writes no file), computed from ``ctx.data`` alone;
* ``html(ctx, tables, draw)`` renders those same tables (and nothing it recomputes) as the section's HTML, drawing
  each figure with ``draw(title, figure)`` so that figure divs are numbered in page order.

Sections never write: :func:`hpo.report.html.write_report` writes every table and the page, so a report is staged
and moved into place whole. The page is the sections of :data:`hpo.report.html.SECTIONS`, in that order; adding a
section is one module that defines a :class:`Section` and one line in that list (docs/report.md, "Adding a
section").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import pandas as pd

from hpo.report.across import ranks
from hpo.report.collect import ReportData
from hpo.report.figures import comparison_table, cost_table, pairs_table, test_metric
from hpo.report.stats import RankSummary

__all__ = ["Context", "Draw", "Section", "Tables"]

Tables = dict[str, pd.DataFrame]
Draw = Callable[[str, Any], str]
T = TypeVar("T")


class Context:
    """The report's data and the frames several sections read (each computed once, on first use)."""

    def __init__(self, data: ReportData) -> None:
        self.data = data
        self.spec = data.spec
        self._kept: dict[str, Any] = {}

    def once(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``'s result, computed on the first call for ``key``: what a section's tables step computes
        and its HTML step renders (a verdict's findings, a figure) without computing it twice."""
        if key not in self._kept:
            self._kept[key] = compute()
        return self._kept[key]

    @property
    def architectures(self) -> list[str]:
        """The study's architectures in its order (the order of the report's colours)."""
        return [a.name for a in self.spec.architectures]

    @cached_property
    def metrics(self) -> dict[str, str]:
        """Each task's headline test metric."""
        return test_metric(self.data)

    @cached_property
    def comparison(self) -> pd.DataFrame:
        return comparison_table(self.data)

    @cached_property
    def pairs(self) -> pd.DataFrame:
        return pairs_table(self.data)

    @cached_property
    def cost(self) -> pd.DataFrame:
        return cost_table(self.data)

    @cached_property
    def ranks(self) -> RankSummary | None:
        return ranks(self.data, self.metrics)


def no_tables(ctx: Context) -> Tables:
    """For a section that shows frames other sections own (or none)."""
    return {}


@dataclass(frozen=True)
class Section:
    """One section of the page: its name (for readers of the registry), its tables, its HTML."""

    name: str
    tables: Callable[[Context], Tables]
    html: Callable[[Context, Tables, Draw], str]
