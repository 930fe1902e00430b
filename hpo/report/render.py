"""The page's building blocks, shared by every report page (study, sweep, ablation summary): the stylesheet, an
HTML table with the best values marked, figures as numbered divs, and the self-contained page around a body.
Every string that comes from a user file is escaped here or by the caller with :func:`hpo.report.escape.esc`."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.offline

from hpo.report.escape import esc

__all__ = ["CSS", "FigureNumbers", "figures_html", "number", "render_page", "table_html"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
padding:0 1rem}h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #ddd;padding:.3rem .6rem;
text-align:right}th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}.best{font-weight:700;
background:#e8f4e8}.muted{color:#666}.note{background:#f8f8f8;border-left:3px solid #1f77b4;padding:.5rem 1rem}
code{background:#f3f3f3;padding:0 .2rem}.fig{margin:1rem 0}td{max-width:24rem;overflow-wrap:break-word}
"""


def number(v: float, *, signed: bool = False) -> str:
    """A float as a reader compares it: four decimals from 0.01 up (AUCs, losses, seconds); below that as many
    decimals as three significant digits need, so that a gain of 0.0000806 stands beside a tolerance of 0.000274
    (four decimals would print 0.0001 and 0.0003, and hide which is larger); below 1e-6 in scientific notation
    (p-values, which four decimals print as 0.0000)."""
    if math.isnan(v):
        return ""
    sign = "+" if signed else ""
    size = abs(v)
    if size == 0 or size >= 0.01 or math.isinf(v):
        return f"{v:{sign}.4f}"
    if size >= 1e-6:
        return f"{v:{sign}.{2 - math.floor(math.log10(size))}f}"
    return f"{v:{sign}.3g}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return number(v)
    if v is None:
        return ""
    return str(v)


def table_html(
    df: pd.DataFrame, *, best: dict[str, bool] | None = None, group: str | list[str] | None = None
) -> str:
    """A table; with ``best`` ({column: higher_is_better}), the best value of each column (per ``group``) is bold."""
    if df.empty:
        return '<p class="muted">no rows</p>'
    marks: set[tuple[int, str]] = set()
    for col, higher in (best or {}).items():
        groups = df.groupby(group) if group else [(None, df)]
        for _, g in groups:
            values = pd.to_numeric(g[col], errors="coerce").dropna()
            if values.empty:
                continue
            target = values.max() if higher else values.min()
            marks |= {(int(i), col) for i in values.index[values == target]}
    # headers break at the underscores (the CSV keeps the names), so that wide tables fit a 1280-px window
    head = "".join(f'<th title="{esc(c)}">{esc(str(c).replace("_", " "))}</th>' for c in df.columns)
    rows = []
    for i, r in df.iterrows():
        cells = "".join(
            f'<td class="best">{esc(_fmt(r[c]))}</td>'
            if (int(i), c) in marks
            else f"<td>{esc(_fmt(r[c]))}</td>"
            for c in df.columns
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f'<div style="overflow-x:auto"><table class="results"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


class FigureNumbers:
    """Draws one figure at a time where a section wants it, numbering the divs on from the figures before."""

    def __init__(self, start: int = 0) -> None:
        self.next = start

    def __call__(self, title: str, fig: Any) -> str:
        out = figures_html([(title, fig)], start=self.next)
        self.next += 1
        return out


def figures_html(figs: list[tuple[str, Any]], start: int = 0) -> str:
    """Each figure as a titled div (plotly's JavaScript is inlined once, by :func:`render_page`); ``start``
    numbers the divs after figures placed elsewhere on the page."""
    parts = []
    for i, (title, fig) in enumerate(figs, start=start):
        div = fig.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"fig{i}", config={"displaylogo": False}
        )
        parts.append(f'<div class="fig"><h3>{esc(title)}</h3>{div}</div>')
    return "".join(parts)


def render_page(title: str, body: str, n_figs: int) -> str:
    """The self-contained page: plotly inlined, and the body's attributes the browser test reads (plots
    expected and rendered, JavaScript errors)."""
    plotly_js = plotly.offline.get_plotlyjs()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{CSS}</style>
<script>window.__hpoErrors=[];window.addEventListener('error',function(e){{window.__hpoErrors.push(String(e.message))}});</script>
<script type="text/javascript">{plotly_js}</script></head>
<body data-expected-plots="{n_figs}">{body}
<script>window.addEventListener('load',function(){{setTimeout(function(){{
document.body.setAttribute('data-rendered-plots',document.querySelectorAll('.js-plotly-plot .main-svg').length>0?
document.querySelectorAll('.js-plotly-plot').length:0);
document.body.setAttribute('data-js-errors',window.__hpoErrors.length);}},500)}});</script>
</body></html>"""
