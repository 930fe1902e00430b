"""The report of a sweep study: the MMoE paper's synthetic experiments (test loss against task correlation p).

A sweep is one ordinary study per value of a generator setting (see ``StudySpec.expand``). Its report sets the
sub-studies side by side: test loss against the swept value per architecture with bootstrap intervals (the paper's
figure 4), the trainability histograms per value (figure 6: how often a run ends in a bad minimum), the learning
rate each architecture's grid chose per value, and the pairwise comparisons at each value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hpo.config.study import StudySpec
from hpo.report.collect import ReportData, collect
from hpo.report.curves import CURVES_TITLE, curve_summary, curves_figure, curves_section
from hpo.report.escape import esc
from hpo.report.figures import COLORS, _layout, band, pair_row, summary_row
from hpo.report.findings import Finding, paired_changes, paper_findings
from hpo.report.output import write_table
from hpo.report.render import figures_html, render_page, table_html
from hpo.report.stats import compare_pairs
from hpo.report.study_sections import randomised
from hpo.storage import keys

__all__ = ["sweep_curves", "sweep_losses", "write_sweep_report"]

MEAN = "mean over tasks"


def sweep_losses(data: ReportData, value: float) -> pd.DataFrame:
    """Per architecture and seed, the test MSE of every task and their mean (``MEAN``): one row per seed."""
    sm = data.seed_metrics
    sel = sm[(sm.split == "test") & (sm.metric == "mse")]
    ok = data.seed_results.loc[data.seed_results.status == "ok", ["architecture", "seed"]]
    sel = sel.merge(ok, on=["architecture", "seed"])
    if sel.empty:
        return pd.DataFrame(columns=["architecture", "seed", MEAN, "value"])
    wide = sel.pivot_table(index=["architecture", "seed"], columns="task", values="value").reset_index()
    tasks = [c for c in wide.columns if c not in ("architecture", "seed")]
    wide[MEAN] = wide[tasks].mean(axis=1)
    wide["value"] = value
    return wide


def _summary_table(losses: pd.DataFrame, key: str, archs: list[str]) -> pd.DataFrame:
    rows = []
    tasks = [MEAN] + [c for c in losses.columns if c not in ("architecture", "seed", MEAN, "value")]
    for value, per_value in losses.groupby("value", sort=True):
        for arch in archs:
            x_all = per_value[per_value.architecture == arch]
            for task in tasks:
                x = x_all[task].dropna().to_numpy(dtype=float)
                if not len(x):
                    continue
                rows.append(summary_row(x, **{key: value}, task=task, architecture=arch))
    return pd.DataFrame(rows)


def _pairs_table(losses: pd.DataFrame, key: str, archs: list[str], paired: bool) -> pd.DataFrame:
    """At each value: unpaired (one random run of each) and, where runs share their data, paired comparisons."""
    rows = []
    for value, per_value in losses.groupby("value", sort=True):
        present = [a for a in archs if (per_value.architecture == a).any()]
        values = {a: per_value.loc[per_value.architecture == a, MEAN].to_numpy(dtype=float) for a in present}
        for r in compare_pairs(values, higher_is_better=False):
            rows.append(pair_row(r, **{key: value}, design="unpaired (Mann-Whitney)"))
        if not paired:
            continue
        wide = per_value.pivot_table(index="seed", columns="architecture", values=MEAN).dropna()
        aligned = {a: wide[a].to_numpy(dtype=float) for a in present if a in wide.columns}
        for r in compare_pairs(aligned, higher_is_better=False, paired=True):
            rows.append(pair_row(r, **{key: value}, design="paired by run (sign test)"))
    return pd.DataFrame(rows)


def convergence_table(datas: list[tuple[float, ReportData]], key: str) -> pd.DataFrame:
    """Per value and architecture: the best epoch of the runs (median, 90th percentile, most) and how many runs
    stopped at the epoch cap rather than by early stopping (those were still improving: the paper trains to
    convergence, so a capped cell is a caveat)."""
    rows = []
    for value, data in datas:
        sr = data.seed_results
        for arch, attrs in data.retrain_attrs.items():
            s = sr[(sr.architecture == arch) & (sr.status == "ok")] if len(sr) else sr
            if not len(s):
                continue
            cap = int((attrs.get(keys.TRAIN_CONFIG) or {}).get("epochs") or 0)
            rows.append(
                {
                    key: value,
                    "architecture": arch,
                    "runs": len(s),
                    "epoch_cap": cap,
                    "best_epoch_median": float(s.best_epoch.median()),
                    "best_epoch_p90": float(s.best_epoch.quantile(0.9)),
                    "epochs_run_max": int(s.epochs_run.max()),
                    "runs_at_cap": int((s.epochs_run >= cap).sum()) if cap else 0,
                }
            )
    return pd.DataFrame(rows)


def _convergence_html(conv: pd.DataFrame) -> str:
    if conv.empty:
        return ""
    capped = conv[conv.runs_at_cap > 0]
    words = (
        "No run reached the epoch cap: every run stopped early on its validation loss."
        if capped.empty
        else f"{int(capped.runs_at_cap.sum())} of {int(conv.runs.sum())} runs in {len(capped)} of {len(conv)} cells "
        "reached the epoch cap and were still improving when stopped; their losses are slightly pessimistic."
    )
    return f"<h2>Convergence</h2><p>{esc(words)}</p>{table_html(conv)}"


def _chosen_table(datas: list[tuple[float, ReportData]], key: str) -> pd.DataFrame:
    """Per value and architecture: the grid's trials (validation objective per learning rate) and the winner."""
    rows = []
    for value, data in datas:
        for arch, attrs in data.retrain_attrs.items():
            t = data.trials[(data.trials.architecture == arch) & (data.trials.state == "COMPLETE")]
            params = [c for c in t.columns if c.startswith("param_")]
            grid = "; ".join(
                ", ".join(
                    f"{c[6:]}={r[c]:g}" if isinstance(r[c], float) else f"{c[6:]}={r[c]}" for c in params
                )
                + f": {r['value_0']:.4f}"
                for _, r in t.sort_values("number").iterrows()
            )
            rows.append(
                {
                    key: value,
                    "architecture": arch,
                    "chosen": ", ".join(
                        f"{k}={v}" for k, v in (attrs.get(keys.TRAIN_CONFIG) or {}).items() if k == "lr"
                    ),
                    "validation objective": (attrs.get(keys.TUNING_VALUES) or [float("nan")])[0],
                    "grid (validation objective per point)": grid,
                    "parameters": int(t.parameter_count.iloc[0]) if len(t) else None,
                    "units_per_layer": t.units_per_layer.iloc[0] if len(t) else "",
                }
            )
    return pd.DataFrame(rows)


def choice_note(chosen: pd.DataFrame, key: str, choose: str) -> str:
    """How the configurations were chosen, and, where each value chose its own, which architectures' curves join
    different configurations (a trend across the sweep that is partly a change of learning rate)."""
    if choose == "pooled":
        return (
            f"<p>Each architecture's configuration was chosen once for the whole sweep (<code>choose: pooled</code>): "
            f"the grid point with the best validation objective averaged over every value of {esc(key)}, retrained "
            "at every value.</p>"
        )
    if chosen.empty:
        return ""
    varies = []
    for arch, rows in chosen.groupby("architecture", sort=False):
        picks = rows.groupby("chosen", sort=False)[key].apply(lambda v: ", ".join(f"{x:g}" for x in v))
        if len(picks) > 1:
            varies.append(f"{arch} ({'; '.join(f'{c} at {key} = {v}' for c, v in picks.items())})")
    if not varies:
        return f"<p>Each value of {esc(key)} chose its own configuration; every architecture chose the same at all.</p>"
    return (
        f"<p><b>The chosen configuration changes across {esc(key)}</b> for {esc('; '.join(varies))}: their curves "
        f"across {esc(key)} join different settings, so part of a trend may be the setting, not {esc(key)}. "
        "<code>sweep: {choose: pooled}</code> chooses once for the whole sweep.</p>"
    )


def loss_band_figure(summary: pd.DataFrame, key: str, archs: list[str]) -> go.Figure:
    """The paper's Figure 3/4 view: mean test loss (over tasks) against the swept value per architecture, with its
    bootstrap 95% band, and the median dotted (a few failed runs move the mean; the median shows the typical run)."""
    fig = go.Figure()
    mean = summary[summary.task == MEAN]
    for i, arch in enumerate(archs):
        s = mean[mean.architecture == arch].sort_values(key)
        if s.empty:
            continue
        c = COLORS[i % len(COLORS)]
        fig.add_trace(band(s[key], s.ci95_low, s.ci95_high, c, arch))
        fig.add_trace(
            go.Scatter(x=s[key], y=s["mean"], mode="lines+markers", name=arch, line_color=c, legendgroup=arch)
        )
        fig.add_trace(
            go.Scatter(
                x=s[key], y=s["median"], mode="lines", name=f"{arch} median", legendgroup=arch,
                line={"color": c, "dash": "dot"},
            )
        )  # fmt: skip
    fig.update_xaxes(title_text=key)
    fig.update_yaxes(title_text="test MSE, mean over tasks")
    return _layout(fig, f"test loss against {key}: mean with bootstrap 95% band, median dotted", 460)


def task_curves_figure(summary: pd.DataFrame, key: str, archs: list[str]) -> go.Figure:
    """Each task's test loss against the swept value, one panel per task, bootstrap 95% intervals as error bars."""
    tasks = [t for t in dict.fromkeys(summary.task) if t != MEAN]
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=[f"test MSE: {t}" for t in tasks])
    for i, arch in enumerate(archs):
        for j, task in enumerate(tasks):
            s = summary[(summary.architecture == arch) & (summary.task == task)].sort_values(key)
            if s.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=s[key],
                    y=s["mean"],
                    mode="lines+markers",
                    name=arch,
                    legendgroup=arch,
                    showlegend=j == 0,
                    line_color=COLORS[i % len(COLORS)],
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": (s.ci95_high - s["mean"]).to_numpy(),
                        "arrayminus": (s["mean"] - s.ci95_low).to_numpy(),
                    },
                ),
                row=1,
                col=j + 1,
            )
            fig.update_xaxes(title_text=key, row=1, col=j + 1)
    return _layout(fig, f"each task's test loss against {key} (mean over runs, bootstrap 95% interval)", 420)


def trainability_figure(losses: pd.DataFrame, key: str, archs: list[str]) -> go.Figure:
    """One panel per swept value: the histogram of final test losses over runs, per architecture."""
    values = sorted(losses.value.unique())
    cols = min(len(values), 3)
    rows = -(-len(values) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"{key} = {v:g}" for v in values])
    hi = float(np.nanpercentile(losses[MEAN], 99)) if len(losses) else 1.0
    lo = float(np.nanmin(losses[MEAN])) if len(losses) else 0.0
    size = (hi - lo) / 30 if hi > lo else None
    for k, v in enumerate(values):
        for i, arch in enumerate(archs):
            x = losses.loc[(losses.value == v) & (losses.architecture == arch), MEAN]
            fig.add_trace(
                go.Histogram(
                    x=x,
                    name=arch,
                    legendgroup=arch,
                    showlegend=k == 0,
                    opacity=0.55,
                    marker_color=COLORS[i % len(COLORS)],
                    xbins={"start": lo, "end": hi, "size": size} if size else None,
                ),
                row=k // cols + 1,
                col=k % cols + 1,
            )
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text="final test loss (mean MSE over tasks)")
    return _layout(fig, "trainability: histograms of final test loss over runs", 320 * rows + 80)


def _provenance_rows(spec: StudySpec, datas: list[tuple[float, ReportData]]) -> str:
    assert spec.sweep is not None
    first = datas[0][1]
    archs = [a.name for a in spec.architectures]
    prov = first.study_attrs.get(archs[0], {}).get("provenance", {})
    items = [
        ("generator", f"{prov.get('generator', 'synthetic')}; settings {json.dumps(prov.get('config', {}))}"),
        ("swept", f"{spec.sweep.key} in {', '.join(f'{v:g}' for v, _ in datas)} (one study per value)"),
        ("randomised per run", randomised(first)),
        ("storage", first.storage),
        ("code revision", ", ".join(first.code_revisions) or "unknown"),
        ("package versions", ", ".join(f"{k} {v}" for k, v in first.versions.items())),
    ]
    return "".join(f"<tr><th>{esc(k)}</th><td style='text-align:left'>{esc(v)}</td></tr>" for k, v in items)


def findings_html(found: list[Finding], key: str) -> str:
    """The paper's observations judged from these runs, first thing on the page (or why none can be)."""
    if not found:
        return (
            '<section id="findings"><h2>The paper\'s observations</h2><p class="muted">This sweep cannot judge '
            f"the MMoE paper's synthetic observations: they concern a sweep over p (this one sweeps {esc(key)}) "
            "with Shared-Bottom, OMoE and MMoE.</p></section>"
        )
    items = "".join(f"<li><b>{esc(f.claim)}: {esc(f.verdict)}.</b> {esc(f.evidence)}.</li>" for f in found)
    return (
        '<section id="findings"><h2>The paper\'s observations, judged from these runs</h2>'
        "<p>Each observation of the MMoE paper's synthetic experiments (Ma et al., KDD 2018, sections 3 and 5) as "
        "this sweep measured it, from the per-run test losses below (medians, since a few runs that fail to train "
        "move a mean more than p does; the figures show every run). Paired comparisons use run s of every "
        "architecture, which trains on the same dataset.</p>"
        f"<ul>{items}</ul></section>"
    )


def changes_html(changes: pd.DataFrame, key: str) -> str:
    """Every swept value against the top of the sweep, paired by run, with its reading (or why there is none)."""
    head = f'<section id="changes"><h2>Change across {esc(key)}, paired by run</h2>'
    if changes.empty:
        return head + f'<p class="muted">no two values of {esc(key)} with retrained runs yet</p></section>'
    note = (
        f"<p>For each architecture, the median test loss (mean over tasks) at each value of {esc(key)} minus the "
        f"median at the top of the sweep. Run s trains on the same data weights, inputs and initialisation at every "
        f"value, so runs are resampled together (bootstrap 95% interval of the change) and the per-run differences "
        f"are tested with the Wilcoxon signed-rank test, Holm-corrected over that architecture's values (the family "
        f"is <code>holm_family_size</code>). <b>flat</b>: the whole interval lies within the study's flat_margin "
        f"(a fraction of the median at the top: <code>margin</code>), so equivalence is shown; <b>rises</b> / "
        f"<b>falls</b>: the interval excludes 0 and the corrected test agrees; <b>not separated</b>: neither a "
        f"change nor its absence is shown with these runs.</p>"
    )
    return head + note + table_html(changes) + "</section>"


def sweep_curves(datas: list[tuple[float, ReportData]], key: str) -> pd.DataFrame:
    """Loss against steps per swept value and architecture (:func:`hpo.report.curves.curve_summary`), over the
    successful runs."""
    curves = [d.seed_curves.assign(**{key: v}) for v, d in datas if not d.seed_curves.empty]
    oks = [
        d.seed_results.loc[d.seed_results.status == "ok", ["architecture", "seed"]].assign(**{key: v})
        for v, d in datas
        if not d.seed_results.empty
    ]
    if not curves or not oks:
        return curve_summary(pd.DataFrame(), pd.DataFrame(), [key, "architecture"])
    return curve_summary(pd.concat(curves, ignore_index=True), pd.concat(oks), [key, "architecture"])


def _write_csvs(stem: Path, tables: dict[str, pd.DataFrame]) -> None:
    for name, df in tables.items():
        write_table(df, f"{stem}_{name}.csv")


def _body(
    spec: StudySpec, summary: pd.DataFrame, pairs: pd.DataFrame, chosen: pd.DataFrame, figs: list[tuple[str, Any]],
    n_seeds: int, prov_rows: str, findings: str, convergence: str, curves: str, choose: str = "per_value",
    changes: str = "",
) -> str:  # fmt: skip
    assert spec.sweep is not None
    key, archs = spec.sweep.key, [a.name for a in spec.architectures]
    mean_table = summary[summary.task == MEAN].drop(columns="task").reset_index(drop=True)
    task_tables = summary[summary.task != MEAN].reset_index(drop=True)
    low = {c: False for c in ("mean", "median", "iqm", "ci95_low", "ci95_high")}
    return f"""
<h1>{esc(spec.name)}: test loss against {esc(key)}</h1>
<p class="muted">architectures {esc(", ".join(archs))} · sampler {esc(spec.sampler.name)} ·
{n_seeds} runs per architecture and value · budget {spec.budget} hidden units per layer</p>
<div class="note">For every value of {esc(key)}, each architecture's hyperparameters were chosen on the validation
split ({esc(spec.sampler.name)} sampler over its search space), then that configuration was trained again once per
run and its loss measured on the test split. Intervals are bootstrap 95% intervals (BCa) of the mean over runs;
the lowest loss at each value is in bold.</div>
{findings}
{changes}
<h2>Test loss (mean MSE over tasks)</h2>{table_html(mean_table, best=low, group=key)}
<h2>Per task</h2>{table_html(task_tables, best=low, group=[key, "task"])}
<h2>Pairwise comparisons at each value</h2>
<p>P(A beats B), with a bootstrap 95% interval. <b>Unpaired</b>: the probability that a random run of A ends with a
lower test loss than a random run of B (Mann-Whitney U test). <b>Paired by run</b>: run s of every architecture
trains on the same dataset (its generator seed depends only on s), so the share of runs that A wins on the same
data, with a two-sided sign test of that share (ties dropped); this removes the dataset-to-dataset variance, which
is most of the spread. p-values are Holm-corrected over the pairs of one design at each value (the CSV's
<code>holm_family_size</code>).</p>
{table_html(pairs)}
<h2>Chosen hyperparameters</h2>{choice_note(chosen, key, choose)}{table_html(chosen)}
{convergence}
<h2>Figures</h2>{figures_html(figs) or '<p class="muted">no retrain results yet: run hpo retrain</p>'}
{curves}
<h2>Provenance</h2><table class="results provenance">{prov_rows}</table>
<h2>Study specification</h2><pre>{esc(json.dumps(spec.model_dump(exclude={"source"}), indent=2, default=str))}</pre>
"""


def _figures(
    summary: pd.DataFrame, losses: pd.DataFrame, key: str, archs: list[str]
) -> list[tuple[str, Any]]:
    """The paper's views of the final losses (none before anything is retrained)."""
    if not len(losses):
        return []
    return [
        (f"Test loss against {key} (the paper's Figures 3 and 4)", loss_band_figure(summary, key, archs)),
        (f"Per task against {key}", task_curves_figure(summary, key, archs)),
        ("Trainability histograms (the paper's Figure 5)", trainability_figure(losses, key, archs)),
    ]


def _curve_html(curves: pd.DataFrame, key: str, archs: list[str], figures_before: int) -> str:
    """Loss against training steps, one line per architecture and value (nothing before any run is stored)."""
    if not len(curves):
        return ""
    figure = curves_figure(curves, key, "architecture", f"per architecture and {key}", archs)
    return figures_html([(CURVES_TITLE, figure)], figures_before)


def write_sweep_report(
    spec: StudySpec, out: str | Path, storage_url: str | None = None, tables: str | Path | None = None
) -> Path:
    """Collect every sub-study of the sweep (from the storage, or from ``tables``: a folder ``hpo export`` wrote)
    and write ``out`` (HTML) plus ``<stem>_*.csv`` beside it."""
    assert spec.sweep is not None
    key = spec.sweep.key
    archs = [a.name for a in spec.architectures]
    datas = [
        (float(sub.sweep_point["value"]), collect(sub, storage_url, tables))
        for sub in spec.expand()
        if sub.sweep_point
    ]
    losses = pd.concat([sweep_losses(d, v) for v, d in datas], ignore_index=True)
    summary = _summary_table(losses, key, archs)
    pairs = _pairs_table(losses, key, archs, paired=spec.retrain.fresh_data)
    chosen = _chosen_table(datas, key)
    conv = convergence_table(datas, key)
    curves = sweep_curves(datas, key)
    margin = spec.sweep.flat_margin
    changes = paired_changes(losses, margin=margin) if len(losses) else pd.DataFrame()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    trials = pd.concat([d.trials.assign(**{key: v}) for v, d in datas], ignore_index=True)
    out_tables = {
        "comparison": summary,
        "pairs": pairs,
        "chosen": chosen,
        "convergence": conv,
        "seed_losses": losses,
        "trials": trials,
        "loss_curves": curves,
        "changes": changes,
    }
    _write_csvs(out.with_suffix(""), out_tables)
    figs = _figures(summary, losses, key, archs)
    n_seeds = int(losses.groupby(["value", "architecture"]).size().min()) if len(losses) else 0
    found = paper_findings(losses, key, margin=margin)
    write_table(pd.DataFrame([f.__dict__ for f in found]), f"{out.with_suffix('')}_findings.csv")
    curve_html = _curve_html(curves, key, archs, len(figs))
    body = _body(
        spec, summary, pairs, chosen, figs, n_seeds, _provenance_rows(spec, datas), findings_html(found, key),
        _convergence_html(conv),
        curves_section(curves, curve_html, f"One line per value of {key}, darker for lower values."),
        spec.sweep.choose, changes_html(changes, key),
    )  # fmt: skip
    n_figs = len(figs) + bool(curve_html)
    out.write_text(render_page(f"{spec.name} report", body, n_figs), encoding="utf-8")
    return out
