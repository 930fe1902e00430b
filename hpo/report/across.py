"""Summaries across tasks: mean ranks with a critical-difference diagram (Demsar 2006) and the per-task Pareto
view (each architecture's scores on two tasks with intervals, the non-dominated ones marked).

Ranks are taken within blocks of (task, seed): seed s of every architecture shares its data order (and, with
fresh data, its dataset), which is what makes a block. Blocks from one dataset are not independent data sets as
in Demsar's setting, so the report reads the diagram as a summary of "who tends to come first", with the test
it used named, not as a claim that generalises across datasets.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hpo.report.collect import ReportData
from hpo.report.figures import COLORS
from hpo.report.stats import RankSummary, rank_summary, summarise
from hpo.schema import HIGHER_IS_BETTER

__all__ = ["pareto_figure", "rank_figure", "rank_html", "ranks"]


def _metric_frame(data: ReportData, metrics: dict[str, str]) -> pd.DataFrame:
    """Test values of the headline metric per (task, seed, architecture), successful seeds only."""
    sm = data.seed_metrics
    if not len(sm):
        return pd.DataFrame(columns=["task", "seed", "architecture", "value"])
    ok = data.seed_results.loc[data.seed_results.status == "ok", ["architecture", "seed"]]
    rows = [sm[(sm.split == "test") & (sm.task == t) & (sm.metric == m)] for t, m in metrics.items()]
    frame = pd.concat(rows).merge(ok, on=["architecture", "seed"])
    return frame[["task", "seed", "architecture", "value"]]


def ranks(data: ReportData, metrics: dict[str, str], alpha: float = 0.05) -> RankSummary | None:
    """Mean ranks over the (task, seed) blocks every architecture completed; None with fewer than 3
    architectures or 2 blocks (a Friedman test needs both)."""
    frame = _metric_frame(data, metrics)
    archs = [a.name for a in data.spec.architectures if (frame.architecture == a.name).any()]
    if len(archs) < 3:
        return None
    wide = frame.pivot_table(index=["task", "seed"], columns="architecture", values="value").dropna()
    if len(wide) < 2:
        return None
    hib = [HIGHER_IS_BETTER[metrics[task]] for task, _ in wide.index]
    return rank_summary(wide[archs].to_numpy(), archs, hib, alpha)


def rank_html(summary: RankSummary | None) -> str:
    if summary is None:
        return '<p class="muted">A rank summary needs at least three architectures with retrained seeds.</p>'
    order = sorted(range(len(summary.names)), key=lambda i: summary.mean_ranks[i])
    ranked = ", ".join(f"{summary.names[i]} {summary.mean_ranks[i]:.2f}" for i in order)
    groups = "; ".join("{" + ", ".join(g) + "}" for g in summary.groups()) or "none (every pair differs)"
    return (
        f"<p>Mean rank (1 = best) over {summary.blocks} blocks of (task, seed), every architecture ranked within a "
        f"block: {ranked}. Friedman test of equal mean ranks: chi-square {summary.friedman_statistic:.2f} with "
        f"{len(summary.names) - 1} degrees of freedom, p = {summary.friedman_p:.3g}. Nemenyi critical difference "
        f"at {summary.alpha:g}: {summary.cd:.3f} (Demsar 2006); groups whose mean ranks lie within it: {groups}. "
        "The blocks share one dataset, so this summarises who tends to come first here; it is not a claim across "
        "datasets.</p>"
    )


def rank_figure(summary: RankSummary | None) -> go.Figure | None:
    """A critical-difference diagram: mean ranks on one axis, the CD as a bar, undistinguished groups joined."""
    if summary is None:
        return None
    k = len(summary.names)
    order = sorted(range(k), key=lambda i: summary.mean_ranks[i])
    fig = go.Figure()
    for row, i in enumerate(order):
        fig.add_trace(
            go.Scatter(
                x=[summary.mean_ranks[i]], y=[-row], mode="markers+text", text=[summary.names[i]],
                textposition="middle right", marker={"size": 11, "color": COLORS[i % len(COLORS)]},
                showlegend=False, hovertemplate=f"{summary.names[i]}: mean rank %{{x:.2f}}<extra></extra>",
            )
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[1, 1 + summary.cd], y=[1, 1], mode="lines+text", text=["", f"CD = {summary.cd:.2f}"],
            textposition="top center", line={"color": "black", "width": 3}, showlegend=False,
        )
    )  # fmt: skip
    for g, group in enumerate(summary.groups()):
        xs = [summary.mean_ranks[summary.names.index(n)] for n in group]
        fig.add_trace(
            go.Scatter(
                x=[min(xs), max(xs)], y=[0.5 + 0.15 * g] * 2, mode="lines", line={"color": "#555", "width": 5},
                showlegend=False, hovertemplate="not distinguished: " + ", ".join(group) + "<extra></extra>",
            )
        )  # fmt: skip
    fig.update_xaxes(title="mean rank (1 = best)", range=[0.8, k + 0.2], dtick=1)
    fig.update_yaxes(visible=False, range=[-k, 1.6])
    fig.update_layout(
        title=f"mean rank over {summary.blocks} (task, seed) blocks: Friedman p = {summary.friedman_p:.3g}; "
        f"joined architectures are within the Nemenyi CD at {summary.alpha:g}",
        template="plotly_white", height=160 + 34 * k, margin={"l": 30, "r": 160, "t": 60, "b": 50},
    )  # fmt: skip
    return fig


def pareto_front(points: dict[str, tuple[float, float]], higher: tuple[bool, bool]) -> list[str]:
    """The architectures no other one beats on both tasks (at least as good on both, better on one)."""

    def at_least(a: float, b: float, up: bool) -> bool:
        return a >= b if up else a <= b

    front = []
    for name, (x, y) in points.items():
        dominated = any(
            at_least(ox, x, higher[0]) and at_least(oy, y, higher[1]) and (ox, oy) != (x, y)
            for other, (ox, oy) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return front


def _means(frame: pd.DataFrame, task: str) -> dict[str, Any]:
    out = {}
    for arch, x in frame[frame.task == task].groupby("architecture", sort=False)["value"]:
        s = summarise(x.to_numpy(dtype=float))
        out[str(arch)] = s
    return out


def pareto_figure(data: ReportData, metrics: dict[str, str]) -> go.Figure | None:
    """The first task against each other task (at most three panels): mean over seeds with its bootstrap 95%
    interval on both axes; the Pareto front is ringed and joined."""
    tasks = list(metrics)
    if len(tasks) < 2:
        return None
    frame = _metric_frame(data, metrics)
    others = tasks[1:4]
    fig = make_subplots(rows=1, cols=len(others), subplot_titles=[f"{tasks[0]} vs {t}" for t in others])
    first = _means(frame, tasks[0])
    archs = [a.name for a in data.spec.architectures]
    for col, task in enumerate(others, start=1):
        second = _means(frame, task)
        names = [a for a in archs if a in first and a in second]
        points = {a: (first[a].mean, second[a].mean) for a in names}
        hib = (HIGHER_IS_BETTER[metrics[tasks[0]]], HIGHER_IS_BETTER[metrics[task]])
        front = pareto_front(points, hib)
        for i, a in enumerate(names):
            fx, fy = first[a], second[a]
            fig.add_trace(
                go.Scatter(
                    x=[fx.mean], y=[fy.mean], mode="markers", name=a, legendgroup=a, showlegend=col == 1,
                    marker={"size": 14 if a in front else 9, "color": COLORS[i % len(COLORS)],
                            "line": {"width": 3 if a in front else 0, "color": "black"}},
                    error_x={"type": "data", "symmetric": False, "array": [fx.ci_high - fx.mean],
                             "arrayminus": [fx.mean - fx.ci_low]},
                    error_y={"type": "data", "symmetric": False, "array": [fy.ci_high - fy.mean],
                             "arrayminus": [fy.mean - fy.ci_low]},
                ),
                1, col,
            )  # fmt: skip
        ordered = sorted(front, key=lambda a: points[a][0])
        fig.add_trace(
            go.Scatter(
                x=[points[a][0] for a in ordered], y=[points[a][1] for a in ordered], mode="lines",
                line={"color": "black", "dash": "dot"}, name="Pareto front", showlegend=col == 1,
            ),
            1, col,
        )  # fmt: skip
        fig.update_xaxes(title_text=f"{tasks[0]} test {metrics[tasks[0]].upper()}", row=1, col=col)
        fig.update_yaxes(title_text=f"{task} test {metrics[task].upper()}", row=1, col=col)
    fig.update_layout(
        title="both tasks at once: mean over seeds with 95% intervals; ringed = on the Pareto front (no other "
        "architecture is at least as good on both tasks)",
        template="plotly_white", height=460, margin={"l": 60, "r": 20, "t": 70, "b": 50},
    )  # fmt: skip
    return fig
