"""Loss against training steps, as the MMoE paper drew its synthetic figures: every retrained run's loss per epoch
(``hpo_seed_curves``) summarised across runs, per group (architecture, or swept value and architecture) and split.

Why a summary rule is needed at all: runs stop early at different steps, so "the mean at step s" must say what a
stopped run contributes. Here a run that stopped keeps its last recorded loss (its training has ended; it is the
run as it stands), so every point averages the same runs and the curve cannot fall merely because the runs that
were doing badly stopped. ``runs_training`` says at each step how many runs still were, so a reader sees where the
curve is carried rather than measured. The band is the normal-approximation 95% interval of the mean across runs
(mean +- 1.96 sd / sqrt(n)): per step over hundreds of steps, a bootstrap would cost more than it tells; the final
losses' bootstrap intervals are in the report's tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from hpo.report.data import ReportData
from hpo.report.escape import esc
from hpo.report.figures import COLORS, _layout, band
from hpo.report.section import Context, Draw, Section, Tables

__all__ = [
    "CURVES_TITLE",
    "CURVE_COLUMNS",
    "LOSS_CURVES",
    "curve_summary",
    "curves_figure",
    "curves_section",
    "run_curves",
]

CURVE_COLUMNS = ["split", "step", "epoch", "runs", "runs_training", "mean", "ci95_low", "ci95_high", "median"]
CURVES_TITLE = "Mean loss over runs against training steps, with its 95% band"
SPLIT_NAMES = {"train": "training loss (the epoch's batches)", "valid": "validation loss (after the epoch)"}


def _run_means(curves: pd.DataFrame, ok: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Each successful run's loss per (split, step), averaged over its tasks (the paper's two tasks equally)."""
    runs = curves.merge(ok, on=[*by, "seed"])
    return (
        runs.groupby([*by, "seed", "split", "step"], sort=True)
        .agg(loss=("loss", "mean"), epoch=("epoch", "max"))
        .reset_index()
    )


def _summarise_group(runs: pd.DataFrame) -> pd.DataFrame:
    """One group and split: runs x steps, each run carried at its last loss after it stopped, summarised per step."""
    wide = runs.pivot(index="seed", columns="step", values="loss").sort_index(axis=1)
    epochs = runs.groupby("step").epoch.max()
    training = wide.notna().sum(axis=0)
    held = wide.ffill(axis=1).to_numpy(dtype=float)
    n = np.isfinite(held).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(held, axis=0)
        half = 1.96 * np.nanstd(held, axis=0, ddof=1) / np.sqrt(n)
        median = np.nanmedian(held, axis=0)
    return pd.DataFrame(
        {
            "step": wide.columns.astype(int),
            "epoch": epochs.reindex(wide.columns).to_numpy(dtype=int),
            "runs": n,
            "runs_training": training.to_numpy(dtype=int),
            "mean": mean,
            "ci95_low": mean - half,
            "ci95_high": mean + half,
            "median": median,
        }
    )


def curve_summary(curves: pd.DataFrame, ok: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group ``by`` (columns of both frames), split and step: the runs' loss (mean over tasks) summarised.

    ``curves`` holds ``hpo_seed_curves`` rows (plus the ``by`` columns); ``ok`` the (``by``, seed) of the runs
    that count (successful ones). Columns: ``by`` then :data:`CURVE_COLUMNS`."""
    if curves.empty or ok.empty:
        return pd.DataFrame(columns=[*by, *CURVE_COLUMNS])
    runs = _run_means(curves, ok[[*by, "seed"]].drop_duplicates(), by)
    parts = []
    for keys, group in runs.groupby([*by, "split"], sort=True):
        head = dict(zip([*by, "split"], keys, strict=True))
        parts.append(_summarise_group(group).assign(**head))
    if not parts:
        return pd.DataFrame(columns=[*by, *CURVE_COLUMNS])
    return pd.concat(parts, ignore_index=True)[[*by, *CURVE_COLUMNS]]


def run_curves(data: ReportData) -> pd.DataFrame:
    """A study's loss against steps per architecture, over its successful runs (replicates' runs pooled, each run
    its own)."""
    curves, results = data.seed_curves, data.seed_results
    if curves.empty or results.empty:
        return curve_summary(pd.DataFrame(), pd.DataFrame(), ["architecture"])
    ok = results.loc[results.status == "ok"]
    if "replicate" in curves and "replicate" in ok:  # seed s of two replicates are two runs
        curves = curves.assign(seed=curves.replicate.astype(str) + "/" + curves.seed.astype(str))
        ok = ok.assign(seed=ok.replicate.astype(str) + "/" + ok.seed.astype(str))
    return curve_summary(curves, ok, ["architecture"])


def _colour(i: int, n: int, sequential: bool) -> str:
    if not sequential:
        return COLORS[i % len(COLORS)]
    return str(sample_colorscale("Viridis", [0.9 * i / max(n - 1, 1)])[0])


def curves_figure(
    summary: pd.DataFrame, line: str, panel: str | None, title: str, order: list[str] | None = None
) -> go.Figure:
    """A column per split and a row per value of ``panel`` (one row when None); one line per value of ``line`` with
    its band: a swept value coloured in order (darker lower), architectures in the report's colours. ``order``: the
    study's architectures, so that each keeps the colour (and the row) it has in the report's other figures."""
    panels = _ordered(summary[panel], order) if panel else [None]
    splits = [s for s in SPLIT_NAMES if (summary.split == s).any()]
    titles = [f"{p}: {SPLIT_NAMES[s]}" if p is not None else SPLIT_NAMES[s] for p in panels for s in splits]
    fig = make_subplots(rows=len(panels), cols=len(splits), subplot_titles=titles, shared_xaxes=True)
    sequential = pd.api.types.is_numeric_dtype(summary[line])
    lines = sorted(summary[line].unique()) if sequential else _ordered(summary[line], order)
    for r, p in enumerate(panels):
        for c, split in enumerate(splits):
            cell = summary[(summary.split == split) & ((summary[panel] == p) if panel else True)]
            lo, hi = _visible_range(cell)
            for i, value in enumerate(lines):
                sel = cell[cell[line] == value]
                if sel.empty:
                    continue
                colour = _colour(i, len(lines), sequential)
                name = f"{line} = {value:g}" if sequential else str(value)
                low, high = sel.ci95_low.clip(lower=lo, upper=hi), sel.ci95_high.clip(lower=lo, upper=hi)
                fig.add_trace(band(sel.step, low, high, colour, name), row=r + 1, col=c + 1)
                fig.add_trace(
                    go.Scatter(
                        x=sel.step, y=sel["mean"], mode="lines", name=name, legendgroup=name,
                        showlegend=r == 0 and c == 0, line_color=colour, customdata=np.c_[sel.runs_training, sel.runs],
                        hovertemplate="step %{x}: %{y:.4g} (%{customdata[0]} of %{customdata[1]} runs training)",
                    ),
                    row=r + 1,
                    col=c + 1,
                )  # fmt: skip
            fig.update_yaxes(
                title_text="loss, mean over tasks", type="log", range=[np.log10(lo), np.log10(hi)],
                row=r + 1, col=c + 1,
            )  # fmt: skip
    fig.update_xaxes(title_text="training steps", row=len(panels))
    return _layout(fig, title, 300 * len(panels) + 120).update_layout(margin={"t": 100})


def _ordered(values: pd.Series, order: list[str] | None) -> list[Any]:
    """The distinct ``values``, those in ``order`` first and in its order."""
    present = list(dict.fromkeys(values))
    first = [v for v in (order or []) if v in present]
    return first + [v for v in present if v not in first]


def _visible_range(cell: pd.DataFrame) -> tuple[float, float]:
    """A panel's log-axis range, from its mean lines (a band of a few wild runs would otherwise flatten them; the
    band is clipped to it, so an interval running past the axis is drawn to its edge)."""
    means = cell["mean"][np.isfinite(cell["mean"]) & (cell["mean"] > 0)]
    if means.empty:
        return 1e-3, 1.0
    return float(means.min()) / 1.5, float(means.max()) * 1.5


def curves_section(summary: pd.DataFrame, figure_html: str, runs_note: str) -> str:
    """``<section id="loss-curves">``: the drawn figure and how to read it, or why there is none."""
    if summary.empty or not figure_html:
        return (
            '<section id="loss-curves"><h2>Loss against training steps</h2><p class="muted">No loss curves: these '
            "runs were retrained before hpo kept each run's loss per epoch, or nothing is retrained yet. Retraining "
            "records them (table <code>hpo_seed_curves</code>).</p></section>"
        )
    groups = [c for c in summary.columns if c not in CURVE_COLUMNS] + ["split"]
    ends = summary.sort_values("step").groupby(groups).last()
    carried = int((ends.runs_training < ends.runs).sum())
    body = (
        "<p>Each run's loss averaged over its tasks, then the mean across runs against training steps, with the 95% "
        f"interval of that mean shaded (normal approximation). {esc(runs_note)} A run that stopped early (its "
        "patience ran out) keeps its last loss from then on, so every point of a curve averages the same runs and a "
        "curve cannot fall because the worse runs stopped; hovering a line shows how many runs were still training "
        f"there ({carried} of {len(ends)} curves end with some runs stopped). Every point is in the "
        "<code>_loss_curves.csv</code> table beside this report.</p>"
    )
    return f'<section id="loss-curves"><h2>Loss against training steps</h2>{body}{figure_html}</section>'


def _loss_curves(ctx: Context, tables: Tables, draw: Draw) -> str:
    curves = tables["loss_curves"]
    fig = (
        draw(CURVES_TITLE, curves_figure(curves, "architecture", None, "per architecture", ctx.architectures))
        if len(curves)
        else ""
    )
    return curves_section(curves, fig, "One line per architecture.")


LOSS_CURVES = Section("loss-curves", lambda ctx: {"loss_curves": run_curves(ctx.data)}, _loss_curves)
