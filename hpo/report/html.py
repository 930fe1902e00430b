"""Write one self-contained HTML report (plotly's JavaScript inlined once: it works opened from disk with no
network) and its tables as CSV beside it. Every string that comes from a user file is escaped."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.offline

from hpo.config.naming import DATA_SEED_OFFSET
from hpo.config.study import StudySpec
from hpo.report.across import pareto_figure, rank_figure, rank_html, ranks
from hpo.report.collect import MIN_FANOVA_TRIALS, ReportData, collect
from hpo.report.curves import CURVES_TITLE, curves_figure, curves_section, run_curves
from hpo.report.escape import esc
from hpo.report.figures import (
    comparison_table,
    cost_table,
    figure_list,
    pairs_table,
    seed_values,
    test_metric,
)
from hpo.report.output import write_table
from hpo.report.robustness import robustness_sections
from hpo.report.settled import settled_frame, settled_html, unsettled_caveat
from hpo.report.stats import RankSummary
from hpo.report.verdict import caveats, gaps_frame, verdict_html, verdicts
from hpo.schema import HIGHER_IS_BETTER

__all__ = ["write_report"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
padding:0 1rem}h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #ddd;padding:.3rem .6rem;
text-align:right}th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}.best{font-weight:700;
background:#e8f4e8}.muted{color:#666}.note{background:#f8f8f8;border-left:3px solid #1f77b4;padding:.5rem 1rem}
code{background:#f3f3f3;padding:0 .2rem}.fig{margin:1rem 0}td{max-width:24rem;overflow-wrap:break-word}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
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


def _provenance(data: ReportData) -> str:
    first = next(iter(data.study_attrs.values()), {})
    prov = first.get("provenance", {})
    seeds = sorted(data.seed_results.seed.unique().tolist()) if len(data.seed_results) else []
    items = [
        ("dataset", prov.get("dataset", data.spec.dataset.kind)),
        (
            "files",
            "; ".join(
                f"{k}: {v.get('path')} sha256 {v.get('sha256')}" for k, v in prov.get("files", {}).items()
            )
            or "generated in memory",
        ),
        ("split", prov.get("split", prov.get("config", ""))),
        ("labels", prov.get("labels", "")),
        ("retrain seeds", f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]})" if seeds else "none yet"),
        ("randomised per seed", randomised(data)),
        ("storage", data.storage),
        ("code revision", ", ".join(data.code_revisions) or "unknown"),
        ("training kernels", "; ".join(data.kernels) or "not recorded"),
        (
            "architectures' code",
            "; ".join(f"{a}: {o}" for a, o in data.model_origins.items() if o != "built-in")
            or "all built into hpo",
        ),
        ("package versions", ", ".join(f"{k} {v}" for k, v in data.versions.items())),
        ("generated", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    rows = "".join(f"<tr><th>{esc(k)}</th><td style='text-align:left'>{esc(v)}</td></tr>" for k, v in items)
    return f'<table class="results provenance">{rows}</table>'


def randomised(data: ReportData) -> str:
    """What varied between seeds, in words (science.md section 6 asks every comparison to say it)."""
    base = f"weight initialisation (seed s) and data order (seed s + {DATA_SEED_OFFSET})"
    if any(a.get("fresh_data") for a in data.retrain_attrs.values()):
        return (
            f"{base}, and the data itself: every seed draws a fresh synthetic dataset (generator seed "
            "SeedSequence([dataset seed, s]), recorded on each retrain chunk as dataset_seeds)"
        )
    prov = next(iter(data.study_attrs.values()), {}).get("provenance", {})
    split = prov.get("split")
    if split == "files":
        how = "the split is the one the data's own train, validation and test files give"
    elif isinstance(split, dict) and "seed" in split:
        how = f"the split is fixed (drawn once with seed {split['seed']})"
    elif prov.get("split_seed") is not None:
        how = f"the split is fixed (seed {prov['split_seed']})"
    else:
        how = "the split is fixed"
    return f"{base}; {how}, identical for all seeds"


def _space_ceiling_note(searched: pd.DataFrame, budget: int) -> str:
    """`` (search spaces searched up to N)`` when every space stopped below the budget: the header must not let a
    small-space study read as a search up to the full budget (issue 13)."""
    if searched.empty or "space_ceiling" not in searched or searched.space_ceiling.isna().all():
        return ""
    top = int(searched.space_ceiling.max())
    return f" (search spaces capped at {top})" if top < budget else ""


def _dataset_name(data: ReportData) -> str:
    """The dataset's own name (a user's table by its declared name, not "file")."""
    info = next(iter(data.study_attrs.values()), {}).get("dataset", {})
    return str(info.get("name") or data.spec.dataset.kind)


def _comparison_sections(comp: pd.DataFrame, metrics: dict[str, str]) -> list[str]:
    out = []
    for task, metric in metrics.items():
        sub = comp[comp.task == task].reset_index(drop=True)
        hib = HIGHER_IS_BETTER[metric]
        best = {"mean": hib, "median": hib, "iqm": hib, "ci95_low": hib, "ci95_high": hib}
        head = f"<h3>{esc(task)}: test {esc(metric.upper())} ({'higher' if hib else 'lower'} is better)</h3>"
        out.append(head + table_html(sub, best=best))
    return out


def _verdict_section(data: ReportData, pairs: pd.DataFrame, metrics: dict[str, str], stem: Path) -> str:
    """The verdict (and ``<stem>_verdict.csv``), then how settled the tuning behind it is (``<stem>_settled.csv``):
    from the same seed values, pairwise table and trials as the rest."""
    values = {task: seed_values(data, task, metric) for task, metric in metrics.items()}
    found = verdicts(values, metrics, pairs)
    write_table(gaps_frame(found), f"{stem}_verdict.csv")
    settled = settled_frame(data)
    if not settled.empty:
        write_table(settled, f"{stem}_settled.csv")
    notes = caveats(found, values, data.seed_results, data.searched) + unsettled_caveat(settled)
    return verdict_html(found, notes, "two-sided Mann-Whitney U", len(pairs)) + settled_html(
        settled, table_html
    )


def _across_figures(
    data: ReportData, metrics: dict[str, str], summary: RankSummary | None
) -> list[tuple[str, Any]]:
    found = [
        ("Ranks across tasks", rank_figure(summary)),
        ("Both tasks: Pareto view", pareto_figure(data, metrics)),
    ]
    return [(t, f) for t, f in found if f is not None]


def _set_only(value: Any) -> Any:
    """The stored spec without its unset entries (null, empty lists and dicts): a census study's dump then shows no
    sweep, no sweep point and no timeout, only what was set or applies."""
    if isinstance(value, dict):
        kept = {k: _set_only(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [], {}, "")}
    if isinstance(value, list):
        return [_set_only(v) for v in value]
    return value


def _importance_note(data: ReportData) -> str:
    few = [a.name for a in data.spec.architectures if a.name not in data.importances]
    if not few:
        return ""
    return (
        f'<p class="muted">Hyperparameter importance (fANOVA) is drawn only for architectures with at least '
        f"{MIN_FANOVA_TRIALS} complete trials of a single objective; {', '.join(few)} had fewer (see What was "
        "searched), so none is shown for them.</p>"
    )


def write_report(
    spec: StudySpec, out: str | Path, storage_url: str | None = None, tables: str | Path | None = None
) -> Path:
    """Collect (from the storage, or from ``tables``: a folder ``hpo export`` wrote), compute, draw and write
    ``out`` (HTML) plus ``<stem>_*.csv`` beside it; return the HTML path."""
    data = collect(spec, storage_url, tables)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    comp, pairs, cost = comparison_table(data), pairs_table(data), cost_table(data)
    stem = out.with_suffix("")
    for name, table in (("comparison", comp), ("pairs", pairs), ("cost", cost), ("trials", data.trials)):
        write_table(table, f"{stem}_{name}.csv")
    write_table(data.searched, f"{stem}_searched.csv")
    metrics = test_metric(data)
    summary = ranks(data, metrics)
    figs = figure_list(data, pairs) + _across_figures(data, metrics, summary)
    drawer = FigureNumbers(start=len(figs))
    parts = figures_html(figs) + _curves_html(data, stem, drawer)
    shown = robustness_sections(data, str(stem), table_html, drawer)
    verdict = _verdict_section(data, pairs, metrics, stem)
    comp_sections = _comparison_sections(comp, metrics)
    n_seeds = int(data.seed_results.groupby("architecture").size().min()) if len(data.seed_results) else 0
    pooled = (
        f"{n_seeds} seeds per architecture ({data.replicates} tuning replicates' retrains pooled)"
        if data.replicates > 1
        else f"{n_seeds} seeds per architecture"
    )
    obj = data.metric_names[0] if data.metric_names else "objective"
    ceiling = _space_ceiling_note(data.searched, spec.budget)
    body = f"""
<h1>{esc(spec.name)}: comparison of {len(spec.architectures)} architectures</h1>
<p class="muted">dataset {esc(_dataset_name(data))} · objective {esc(obj)} · sampler {esc(spec.sampler.name)} ·
pruner {esc(spec.pruner.name)} · budget {spec.budget} hidden units per layer{ceiling} · {esc(pooled)}</p>
<div class="note">Each architecture was tuned on the validation split; its best configuration was then retrained from
random initialisation with every seed below and evaluated once on the test split. Intervals are bootstrap 95%
intervals of the mean over seeds (BCa, or percentile where BCa is undefined); the best value of each column is in
bold.</div>
{verdict}
<section id="searched"><h2>What was searched</h2>
<p>Per architecture: complete tuning trials, the most epochs a trial ran, the largest hidden units per layer any
trial used against its search space's ceiling and the budget, and the best configuration's parameters that sit on a bound of their search range
(a best value on a bound means the range, not the tuner, chose it: widen the range or read the result with that
caveat). For scale, the MMoE paper's tuner ran "thousands of experiments" per method and tuned the number of
training steps.</p>{table_html(data.searched)}</section>
<h2>Test results over seeds</h2>{"".join(comp_sections) or '<p class="muted">no retrain results yet: run hpo retrain</p>'}
<section id="ranks"><h2>Across tasks</h2>{rank_html(summary)}</section>
<h2>Pairwise comparisons</h2>
<p>P(A beats B): the probability that A's test metric beats B's for one random seed of each, with a bootstrap 95%
interval; p-values are two-sided Mann-Whitney U tests (whose statistic is that probability), Holm-corrected as one
family: every pair on every task in this table ({len(pairs)} tests, the CSV's <code>holm_family_size</code>).</p>
{table_html(pairs)}
<h2>Cost</h2>{table_html(cost)}
<h2>Figures</h2>{_importance_note(data)}{parts}
{shown}
<h2>Provenance</h2>{_provenance(data)}
<h2>Study specification</h2><p class="muted">As stored on the studies, settings that are unset (null or empty)
left out; the search spaces as they were searched.</p><pre>{esc(json.dumps(_set_only(next(iter(data.study_attrs.values()), {}).get("spec", {})), indent=2))}</pre>
"""
    out.write_text(render_page(f"{spec.name} report", body, drawer.next), encoding="utf-8")
    return out


def _curves_html(data: ReportData, stem: Path, drawer: FigureNumbers) -> str:
    """The loss-against-steps section (and ``<stem>_loss_curves.csv``)."""
    curves = run_curves(data)
    write_table(curves, f"{stem}_loss_curves.csv")
    fig = (
        drawer(CURVES_TITLE, curves_figure(curves, "architecture", None, "per architecture"))
        if len(curves)
        else ""
    )
    return curves_section(curves, fig, "One line per architecture.")


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
