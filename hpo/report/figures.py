"""Tables and figures of a report: compute plain data first, then draw it (Optuna's visualisation pattern).
Figure functions return plotly figures and write nothing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hpo.report.collect import ReportData, seed_frame
from hpo.report.stats import PairComparison, compare_pairs, holm_over, summarise
from hpo.schema import HIGHER_IS_BETTER, default_metric

__all__ = [
    "comparison_table",
    "convergence_figure",
    "cost_table",
    "distribution_figure",
    "gate_figure",
    "importance_figure",
    "pairs_frame",
    "pairs_table",
    "size_figures",
    "test_metric",
]

COLORS = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
]


def band(x: Any, low: Any, high: Any, color: str, group: str | None = None) -> go.Scatter:
    """A shaded interval between ``low`` and ``high`` along ``x`` (no legend entry; grouped with its line)."""
    x, low, high = np.asarray(x), np.asarray(low), np.asarray(high)
    return go.Scatter(
        x=np.r_[x, x[::-1]],
        y=np.r_[high, low[::-1]],
        mode="lines",
        fill="toself",
        fillcolor=color,
        opacity=0.16,
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        legendgroup=group,
    )


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title=title, template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 60, "b": 50}
    )
    return fig


def test_metric(data: ReportData) -> dict[str, str]:
    """The headline metric per task: AUC for binary tasks, MSE for regression (from the seed metrics present)."""
    out = {}
    sm = data.seed_metrics
    for task in sm["task"].unique() if len(sm) else []:
        metrics = set(sm.loc[sm.task == task, "metric"])
        binary = default_metric("binary")  # a task with AUC rows is binary
        out[str(task)] = binary if binary in metrics else default_metric("regression")
    return out


def seed_values(data: ReportData, task: str, metric: str, split: str = "test") -> dict[str, np.ndarray]:
    """Each architecture's values over its successful seeds (of every tuning replicate, pooled)."""
    sel = seed_frame(data.seed_results, data.seed_metrics, task, metric, split)
    archs = [a.name for a in data.spec.architectures]
    return {
        a: sel.loc[sel.architecture == a, "value"].to_numpy(dtype=float)
        for a in archs
        if (sel.architecture == a).any()
    }


def comparison_table(data: ReportData) -> pd.DataFrame:
    """Per architecture and task: n, mean, std, median, IQM and the bootstrap 95% interval of the mean."""
    rows = []
    for task, metric in test_metric(data).items():
        for arch, x in seed_values(data, task, metric).items():
            rows.append(summary_row(x, architecture=arch, task=task, metric=metric))
    return pd.DataFrame(rows)


def summary_row(x: np.ndarray, **keys: Any) -> dict[str, Any]:
    """One row of a results table: ``keys`` first, then n, mean, std, median, IQM and the bootstrap interval."""
    s = summarise(x)
    return {
        **keys,
        "seeds": s.n,
        "mean": s.mean,
        "std": s.std,
        "median": s.median,
        "iqm": s.iqm,
        "ci95_low": s.ci_low,
        "ci95_high": s.ci_high,
    }


def pair_row(r: PairComparison, **keys: Any) -> dict[str, Any]:
    """One row of a pairwise table: ``keys`` (task, swept value, ...) first, then the comparison."""
    return {
        **keys,
        "a": r.a,
        "b": r.b,
        "p_a_beats_b": r.p_a_beats_b,
        "ci95_low": r.ci_low,
        "ci95_high": r.ci_high,
        "test": r.test,
        "p_value": r.p_value,
        "holm_p": r.p_holm,
        "holm_family_size": r.family,
        "significant_at_0.05": r.significant,
    }


def pairs_table(data: ReportData) -> pd.DataFrame:
    """Every pair on every task, Holm-corrected as one family: all the pairs and tasks of the report (a claim
    about any one pair on any one task stays at the stated level however many tasks the report shows)."""
    metrics = test_metric(data)
    return pairs_frame({task: seed_values(data, task, metric) for task, metric in metrics.items()}, metrics)


def pairs_frame(values_by_task: dict[str, dict[str, np.ndarray]], metrics: dict[str, str]) -> pd.DataFrame:
    """:func:`pairs_table` from given seed values per task and architecture: the verdict's sensitivity to
    collapsed seeds reruns the same family on the seeds that trained."""
    found: list[tuple[str, str, PairComparison]] = []
    for task, metric in metrics.items():
        for r in compare_pairs(values_by_task[task], higher_is_better=HIGHER_IS_BETTER[metric]):
            found.append((task, metric, r))
    corrected = holm_over([r for _, _, r in found])
    return pd.DataFrame(
        [pair_row(r, task=task, metric=metric) for (task, metric, _), r in zip(found, corrected, strict=True)]
    )


def cost_table(data: ReportData) -> pd.DataFrame:
    rows = []
    sr = data.seed_results
    for arch in (a.name for a in data.spec.architectures):
        ra = data.retrain_attrs.get(arch, {})
        t = data.trials[(data.trials.architecture == arch) & (data.trials.number == ra.get("tuning_trial"))]
        s = sr[sr.architecture == arch]
        rows.append(
            {
                "architecture": arch,
                "tuned_trial": ra.get("tuning_trial"),
                "parameters": int(s.parameter_count.iloc[0]) if len(s) else None,
                "units_per_layer": t.units_per_layer.iloc[0] if len(t) else "",
                "model_config": ", ".join(f"{k}={v}" for k, v in (ra.get("model_config") or {}).items()),
                "seeds": len(s),
                "mean_epochs": float(s.epochs_run.mean()) if len(s) else None,
                "train_seconds_per_seed": float((s.wall_time / s.replicas_in_run).mean()) if len(s) else None,
                "tuning_trials": int(
                    ((data.trials.architecture == arch) & (data.trials.state == "COMPLETE")).sum()
                ),
                "tuning_seconds": float(data.trials.loc[data.trials.architecture == arch, "wall_time"].sum()),
                # the sampler's own time (its proposals), beside the training time it paces: a GP proposal costs a
                # fraction of a second (bench/study.py measures it), a share only cheap trials feel
                "sampler_seconds": float(
                    data.trials.loc[data.trials.architecture == arch, "proposal_seconds"].sum()
                )
                if "proposal_seconds" in data.trials
                else None,
            }
        )
    return pd.DataFrame(rows)


def robust_range(values: dict[str, np.ndarray], metric: str) -> tuple[float, float, dict[str, int]]:
    """One axis range for every architecture of a task: the pooled seeds within Tukey's far-out fences (quartiles
    -/+ 3 IQR), widened by a tenth; seeds outside it (collapsed ones) are counted per architecture instead of
    stretching the axis for everyone (a collapsed seed once squeezed every other histogram into one bar)."""
    pooled = np.concatenate([v for v in values.values() if len(v)]) if values else np.array([])
    if len(pooled) == 0:
        return (0.0, 1.0, {})
    q1, q3 = np.percentile(pooled, [25, 75])
    fence = 3 * (q3 - q1)  # Tukey's far-out fences: beyond them a seed is an outlier, not the spread
    lo = max(float(pooled.min()), q1 - fence) if fence > 0 else float(pooled.min())
    hi = min(float(pooled.max()), q3 + fence) if fence > 0 else float(pooled.max())
    pad = 0.1 * (hi - lo) or 0.05 * max(abs(float(hi)), 1e-12)
    lo, hi = float(lo - pad), float(hi + pad)
    outside = {a: int(((v < lo) | (v > hi)).sum()) for a, v in values.items()}
    return lo, hi, {a: n for a, n in outside.items() if n}


def _outside_note(fig: go.Figure, outside: dict[str, int], lo: float, hi: float) -> None:
    if outside:
        text = "outside the axis: " + ", ".join(
            f"{a} {n} seed{'s' if n > 1 else ''}" for a, n in outside.items()
        )
        fig.add_annotation(
            text=f"{text} (range {lo:.4g} to {hi:.4g})", xref="paper", yref="paper", x=0, y=1.08,
            showarrow=False, align="left",
        )  # fmt: skip


def distribution_figure(data: ReportData, task: str, metric: str) -> go.Figure:
    """Each architecture's test metric over seeds: violin, box and every seed, on one robust range."""
    fig = go.Figure()
    values = seed_values(data, task, metric)
    lo, hi, outside = robust_range(values, metric)
    for i, (arch, x) in enumerate(values.items()):
        inside = x[(x >= lo) & (x <= hi)]
        fig.add_trace(
            go.Violin(
                y=inside,
                name=arch,
                box_visible=True,
                meanline_visible=True,
                points="all",
                line_color=COLORS[i % len(COLORS)],
                jitter=0.3,
            )
        )
    fig.update_yaxes(range=[lo, hi])
    _outside_note(fig, outside, lo, hi)
    return _layout(fig, f"test {metric.upper()} of {task} over seeds", 460)


def histogram_figure(data: ReportData, task: str, metric: str) -> go.Figure:
    """Trainability: every architecture's seeds in the same bins over one robust range."""
    fig = go.Figure()
    values = seed_values(data, task, metric)
    lo, hi, outside = robust_range(values, metric)
    bins = {"start": lo, "end": hi, "size": (hi - lo) / 30}
    for i, (arch, x) in enumerate(values.items()):
        fig.add_trace(
            go.Histogram(
                x=x[(x >= lo) & (x <= hi)], name=arch, opacity=0.6, marker_color=COLORS[i % len(COLORS)],
                xbins=bins, autobinx=False,
            )
        )  # fmt: skip
    fig.update_layout(barmode="overlay", xaxis_title=f"test {metric.upper()} ({task})", yaxis_title="seeds")
    fig.update_xaxes(range=[lo, hi])
    _outside_note(fig, outside, lo, hi)
    return _layout(fig, f"trainability: histogram of final test {metric.upper()} ({task})")


def convergence_figure(data: ReportData) -> go.Figure:
    """Best objective so far against trial number, per architecture (the study's sampler)."""
    fig = go.Figure()
    maximize = data.directions[:1] == ["maximize"]
    tr = data.trials
    for i, arch in enumerate(a.name for a in data.spec.architectures):
        t = tr[(tr.architecture == arch) & (tr.state == "COMPLETE")].sort_values("number")
        if "value_0" not in t or t.empty:
            continue
        best = t.value_0.cummax() if maximize else t.value_0.cummin()
        c = COLORS[i % len(COLORS)]
        fig.add_trace(
            go.Scatter(
                x=t.number,
                y=t.value_0,
                mode="markers",
                name=f"{arch} trials",
                marker_color=c,
                opacity=0.35,
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(x=t.number, y=best, mode="lines", name=arch, line={"color": c, "shape": "hv"})
        )
    name = data.metric_names[0] if data.metric_names else "objective"
    fig.update_layout(xaxis_title="trial", yaxis_title=name)
    last = int(tr.number.max()) if len(tr) else 1
    fig.update_xaxes(
        tick0=0, dtick=max(1, math.ceil(last / 10)), tickformat="d"
    )  # whole trials: no tick at 0.5
    return _layout(fig, f"tuning convergence ({data.spec.sampler.name} sampler): best {name} so far")


def importance_figure(data: ReportData) -> go.Figure | None:
    """fANOVA importance, only for architectures with enough complete trials to fit its forest on."""
    items = {a: imp for a, imp in data.importances.items() if imp}
    if not items:
        return None
    fig = make_subplots(rows=1, cols=len(items), subplot_titles=list(items))
    for j, (_arch, imp) in enumerate(items.items(), start=1):
        names, vals = list(imp)[::-1], list(imp.values())[::-1]
        fig.add_trace(
            go.Bar(x=vals, y=names, orientation="h", showlegend=False, marker_color=COLORS[j - 1]), 1, j
        )
    from hpo.report.collect import MIN_FANOVA_TRIALS

    return _layout(
        fig,
        f"hyperparameter importance (fANOVA, architectures with >= {MIN_FANOVA_TRIALS} complete trials)",
        380,
    )


def size_figures(data: ReportData) -> go.Figure:
    """Objective against parameters, units per layer and training time, every complete tuning trial."""
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("parameters", "max units per layer", "training seconds"),
        shared_yaxes=True,
    )
    tr = data.trials
    for i, arch in enumerate(a.name for a in data.spec.architectures):
        t = tr[(tr.architecture == arch) & (tr.state == "COMPLETE")]
        if t.empty or "value_0" not in t:
            continue
        for col, key in enumerate(("parameter_count", "max_units_per_layer", "wall_time"), start=1):
            fig.add_trace(
                go.Scatter(
                    x=t[key],
                    y=t.value_0,
                    mode="markers",
                    name=arch,
                    legendgroup=arch,
                    showlegend=col == 1,
                    marker={"color": COLORS[i % len(COLORS)], "size": 7},
                    text=[f"trial {n}" for n in t.number],
                ),
                1,
                col,
            )
    fig.update_xaxes(type="log")
    name = data.metric_names[0] if data.metric_names else "objective"
    fig.update_yaxes(title_text=name, row=1, col=1)
    return _layout(fig, "score against size and cost (tuning trials)")


def gate_figure(data: ReportData, arch: str) -> go.Figure | None:
    use = data.gate_use.get(arch)
    if use is None or use.empty:
        return None
    if "replicate" in use:  # replicates tuned different configurations: one row per replicate and gate
        use = use.assign(
            gate=[f"replicate {int(r)}: {g}" for r, g in zip(use.replicate, use.gate, strict=True)]
        )
    pivot = use.pivot_table(index="gate", columns="expert", values="mean", sort=False)
    fig = go.Figure(
        go.Heatmap(
            z=pivot.to_numpy(),
            x=list(pivot.columns),
            y=list(pivot.index),
            colorscale="Blues",
            zmin=0,
            colorbar={"title": "mean weight"},
            hoverongaps=False,
        )
    )
    fig.update_layout(xaxis_title="expert", yaxis_title="gate")
    return _layout(
        fig,
        f"{arch}: gate utilisation on the test split (mean weight, averaged over seeds)",
        max(300, 40 * len(pivot.index) + 140),
    )


def pairs_figure(pairs: pd.DataFrame, task: str) -> go.Figure | None:
    if pairs.empty:  # one architecture: no pairs
        return None
    p = pairs[pairs.task == task]
    if p.empty:
        return None
    names = list(dict.fromkeys([*p.a, *p.b]))
    z = np.full((len(names), len(names)), np.nan)
    for _, r in p.iterrows():
        i, j = names.index(r.a), names.index(r.b)
        z[i, j], z[j, i] = r.p_a_beats_b, 1 - r.p_a_beats_b
    star = np.zeros_like(z, dtype=bool)
    for _, r in p.iterrows():
        i, j = names.index(r.a), names.index(r.b)
        star[i, j] = star[j, i] = bool(r.holm_p < 0.05)
    text = [
        ["" if np.isnan(v) else f"{v:.2f}{'*' if s else ''}" for v, s in zip(row, srow, strict=True)]
        for row, srow in zip(z, star, strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            zmin=0,
            zmax=1,
            colorscale="RdBu",
            text=text,
            texttemplate="%{text}",
            colorbar={"title": "P(row beats column)"},
            hoverongaps=False,
        )
    )
    fig.update_yaxes(autorange="reversed")
    family = int(p.holm_family_size.iloc[0]) if "holm_family_size" in p else len(p)
    return _layout(
        fig,
        f"P(row's architecture beats the column's on one random seed), {task}; * Holm-corrected p < 0.05 "
        f"(one family of {family} tests)",
        max(420, 60 + 36 * len(names)),
    )


def figure_list(data: ReportData, pairs: pd.DataFrame) -> list[tuple[str, go.Figure]]:
    figs: list[tuple[str, Any]] = []
    for task, metric in test_metric(data).items():
        figs.append((f"Distribution over seeds: {task}", distribution_figure(data, task, metric)))
        figs.append((f"Trainability histogram: {task}", histogram_figure(data, task, metric)))
        figs.append((f"Pairwise: {task}", pairs_figure(pairs, task)))
    figs.append(("Tuning convergence", convergence_figure(data)))
    figs.append(("Hyperparameter importance", importance_figure(data)))
    figs.append(("Score against size and cost", size_figures(data)))
    for arch in (a.name for a in data.spec.architectures):
        figs.append((f"Gate utilisation: {arch}", gate_figure(data, arch)))
    return [(t, f) for t, f in figs if f is not None]
