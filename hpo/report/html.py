"""Write the study report: one self-contained HTML page (plotly's JavaScript inlined once: it opens from disk with
no network) made of the sections in :data:`SECTIONS`, and every section's tables as CSV beside it.

This module is the only writer: each section computes its tables and renders its HTML (:mod:`hpo.report.section`),
and :func:`write_report` writes both. To add a section, write a module defining a
:class:`~hpo.report.section.Section` and put it in :data:`SECTIONS` where it belongs on the page.
"""

from __future__ import annotations

from pathlib import Path

from hpo.config.study import StudySpec
from hpo.report.collect import collect
from hpo.report.curves import LOSS_CURVES
from hpo.report.output import write_table
from hpo.report.render import FigureNumbers, render_page
from hpo.report.robustness import DEFAULT_VS_TUNED, EXPECTED_MAX, REPLICATES, VARIANCE
from hpo.report.section import Context, Section
from hpo.report.selection import SELECTION
from hpo.report.study_sections import (
    COMPARISON,
    COST,
    FIGURES,
    HEADER,
    PAIRS,
    PROVENANCE,
    RANKS,
    SEARCHED,
    SPECIFICATION,
    VERDICT,
)

__all__ = ["SECTIONS", "write_report"]

# the page, top to bottom (figure divs are numbered in this order)
SECTIONS: list[Section] = [
    HEADER,
    VERDICT,
    SEARCHED,
    COMPARISON,
    RANKS,
    PAIRS,
    COST,
    FIGURES,
    LOSS_CURVES,
    EXPECTED_MAX,
    REPLICATES,
    SELECTION,
    VARIANCE,
    DEFAULT_VS_TUNED,
    PROVENANCE,
    SPECIFICATION,
]


def write_report(
    spec: StudySpec,
    out: str | Path,
    storage_url: str | None = None,
    tables: str | Path | None = None,
    *,
    partial: bool = False,
) -> Path:
    """Collect (from the storage, or from ``tables``: a folder ``hpo export`` wrote), compute every section's
    tables, write them as ``<stem>_<name>.csv`` (an empty one writes no file), render the sections in order and
    write ``out``; return the HTML path. ``partial``: a progress report of a study still running
    (:func:`hpo.report.collect.collect`)."""
    ctx = Context(collect(spec, storage_url, tables, partial=partial))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    draw = FigureNumbers()
    body = []
    for section in SECTIONS:
        frames = section.tables(ctx)
        for name, frame in frames.items():
            write_table(frame, f"{stem}_{name}.csv")
        body.append(section.html(ctx, frames, draw))
    page = render_page(f"{spec.name} report", "".join(body) + "\n", draw.next)
    out.write_text(page, encoding="utf-8")
    return out
