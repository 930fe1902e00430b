"""The study report's own sections (:mod:`hpo.report.section`): header, verdict, what was searched, test results,
ranks, pairwise comparisons, cost, figures, provenance and the study specification. The robustness sections live
in :mod:`hpo.report.robustness` and the loss curves in :mod:`hpo.report.curves`; the page's order is
:data:`hpo.report.html.SECTIONS`."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pandas as pd

from hpo.config.naming import DATA_SEED_OFFSET
from hpo.logs import duration
from hpo.report.across import pareto_figure, rank_figure, rank_html
from hpo.report.collect import MIN_FANOVA_TRIALS, ReportData, seed_frame
from hpo.report.escape import esc
from hpo.report.figures import figure_list, pairs_frame, seed_values
from hpo.report.render import table_html
from hpo.report.section import Context, Draw, Section, Tables, no_tables
from hpo.report.settled import judged_bounds, settled_frame, settled_html, tuning_progress, unsettled_caveat
from hpo.report.stats import RankSummary
from hpo.report.verdict import (
    caveats,
    collapse_caveats,
    collapse_patterns,
    gaps_frame,
    gate_caveats,
    span,
    verdict_html,
    verdicts,
    without_collapsed,
)
from hpo.schema import HIGHER_IS_BETTER
from hpo.storage import keys

__all__ = [
    "COMPARISON",
    "COST",
    "FIGURES",
    "HEADER",
    "PAIRS",
    "PROVENANCE",
    "RANKS",
    "SEARCHED",
    "SPECIFICATION",
    "VERDICT",
    "randomised",
]


def _header(ctx: Context, tables: Tables, draw: Draw) -> str:
    data, spec = ctx.data, ctx.spec
    counts = data.seed_results.groupby("architecture").size() if len(data.seed_results) else pd.Series()
    n_seeds = int(counts.min()) if len(counts) else 0
    pooled = f"{span(counts) if n_seeds else 0} seed{'' if counts.max() == 1 else 's'} per architecture"
    pooled += _replicates_pooled(spec)
    how = """Each architecture was tuned on the validation split; its best configuration was then retrained from
random initialisation with every seed below and evaluated once on the test split. Intervals are bootstrap 95%
intervals of the mean over seeds (BCa, or percentile where BCa is undefined); the best value of each column is in
bold."""
    if n_seeds and retraining_left(data):
        pooled += " so far: the retraining is in progress, a progress report"
    if not n_seeds:  # tuning only so far: the verdict section says how far it has come
        pooled = "no seed retrained yet: a progress report"
        how = """A progress report: each architecture's tuning so far, on the validation split. When tuning has
stopped, each best configuration is retrained from random initialisation on every retraining seed and evaluated
once on the test split, and the verdict comes from those seeds."""
    obj = data.metric_names[0] if data.metric_names else "objective"
    ceiling = _space_ceiling_note(data.searched, spec.budget)
    return f"""
<h1>{esc(spec.name)}: comparison of {len(spec.architectures)} architectures</h1>
<p class="muted">dataset {esc(_dataset_name(data))} · objective {esc(obj)} · sampler {esc(spec.sampler.name)} ·
pruner {esc(spec.pruner.name)} · budget {spec.budget} hidden units per layer{ceiling} · {esc(pooled)}</p>
<div class="note">{how}</div>"""


def _replicates_pooled(spec: Any) -> str:
    """`` (3 tuning replicates' retrains pooled)``, naming the architectures when only some were replicated, so
    that a reader of "30 to 90 seeds" knows which have 90."""
    reps = {a.name: a.replicates or spec.replicates for a in spec.architectures}
    if max(reps.values()) == 1:
        return ""
    if len(set(reps.values())) == 1:
        return f" ({spec.replicates} tuning replicates' retrains pooled)"
    named = "; ".join(
        f"{', '.join(a for a, r in reps.items() if r == k)}: {k}"
        for k in sorted(set(reps.values()), reverse=True)
    )
    return f" (tuning replicates' retrains pooled; replicates per architecture: {named})"


HEADER = Section("header", no_tables, _header)


def _verdict_found(ctx: Context) -> tuple[dict[str, Any], list[Any]]:
    """Per task the seeds' values, and the verdicts drawn from them and the pairwise table."""

    def compute() -> tuple[dict[str, Any], list[Any]]:
        values = {task: seed_values(ctx.data, task, metric) for task, metric in ctx.metrics.items()}
        if retraining_left(
            ctx.data
        ):  # a verdict from some of the seeds is not the study's: none, in page or CSV
            return values, []
        return values, verdicts(values, ctx.metrics, ctx.pairs)

    return ctx.once("verdicts", compute)


def _without_collapsed(ctx: Context) -> tuple[dict[str, dict[str, tuple[int, int]]], list[Any]]:
    """The seeds each task's collapse rule left out, and the verdicts drawn again without them (none when no seed
    collapsed, or while there is no verdict)."""

    def compute() -> tuple[dict[str, dict[str, tuple[int, int]]], list[Any]]:
        values, found = _verdict_found(ctx)
        kept, dropped = without_collapsed(values, ctx.metrics)
        if not (found and dropped):
            return {}, []
        return dropped, verdicts(kept, ctx.metrics, pairs_frame(kept, ctx.metrics))

    return ctx.once("without_collapsed", compute)


def _verdict_tables(ctx: Context) -> Tables:
    """The verdict's gaps, the same with collapsed seeds left out, and how settled the tuning behind it is: from
    the same seed values, pairwise table and trials as the rest."""
    _, found = _verdict_found(ctx)
    _, again = _without_collapsed(ctx)
    return {
        "verdict": gaps_frame(found),
        "verdict_without_collapsed": gaps_frame(again),
        "settled": _settled(ctx),
    }


def _settled(ctx: Context) -> pd.DataFrame:
    """The `#settled` frame, computed once: the verdict shows it and every table of bound hits follows it."""
    return ctx.once("settled", lambda: settled_frame(ctx.data))


def _searched_judged(ctx: Context) -> pd.DataFrame:
    """The "what was searched" table with the bound hits `#settled` names (not the raw trial's), computed once for
    the verdict's caveats and `#searched`."""
    return ctx.once("searched", lambda: judged_bounds(ctx.data.searched, _settled(ctx)))


def retraining_left(data: ReportData) -> dict[str, tuple[int, int]]:
    """Per architecture whose retraining has not finished: (seeds trained, failed ones included; seeds the
    study asks for, over its tuning replicates). Empty when every architecture has all its seeds."""
    spec, results = data.spec, data.seed_results
    done = results.groupby("architecture").size() if len(results) else pd.Series(dtype=int)
    left = {}
    for a in spec.architectures:
        planned = spec.retrain.seeds * (a.replicates or spec.replicates)
        if (n := int(done.get(a.name, 0))) < planned:
            left[a.name] = (n, planned)
    return left


def retraining_seconds_left(data: ReportData, left: dict[str, tuple[int, int]]) -> float | None:
    """Training seconds the seeds still to come are likely to take, for one worker: each tuning run's missing
    seeds at the mean time of that run's seeds so far, since replicates tuned different configurations (on census
    one Shared-Bottom replicate's seed takes 5 minutes, another's 33); a run with none yet at its architecture's
    mean over the other runs. The mean, not the median, because a sum is wanted and seed times are skewed (a seed
    that collapses stops early). ``None`` while an architecture with seeds to come has none timed yet."""
    spec, sr = data.spec, data.seed_results
    sr = sr if "replicate" in sr else sr.assign(replicate=1)
    per_seed = sr.wall_time / sr.replicas_in_run
    by_arch = per_seed.groupby(sr.architecture).mean()
    by_run = per_seed.groupby([sr.architecture, sr.replicate]).agg(["mean", "size"])
    total = 0.0
    for arch in spec.architectures:
        if arch.name not in left:
            continue
        if arch.name not in by_arch.index or not math.isfinite(by_arch[arch.name]):
            return None
        for r in range(1, (arch.replicates or spec.replicates) + 1):
            mean, done = (
                by_run.loc[(arch.name, r)] if (arch.name, r) in by_run.index else (by_arch[arch.name], 0)
            )
            total += max(0, spec.retrain.seeds - int(done)) * float(mean)
    return total


def _verdict(ctx: Context, tables: Tables, draw: Draw) -> str:
    values, found = _verdict_found(ctx)
    settled, data = tables["settled"], ctx.data
    notes = caveats(found, values, data.seed_results, _searched_judged(ctx)) + unsettled_caveat(settled)
    dropped, again = _without_collapsed(ctx)
    notes += collapse_caveats(found, again, dropped)
    for task, metric in ctx.metrics.items():
        notes += collapse_patterns(
            seed_frame(data.seed_results, data.seed_metrics, task, metric),
            task,
            metric,
            selected=data.spec.retrain.select is not None,
        )
    notes += gate_caveats(data.gate_use)
    pending = tuning_progress(settled)
    if len(data.seed_results) and (left := retraining_left(data)):
        trained = ", ".join(f"{a} {n}/{m}" for a, (n, m) in left.items())
        pending = (
            f"No verdict yet: the retraining is in progress (seeds trained of those planned: {trained}). The "
            "tables below are provisional: they hold the seeds trained so far."
        )
        if (seconds := retraining_seconds_left(data, left)) is not None:
            pending += (
                f" At the mean training time of each tuning run's seeds so far, the rest need about "
                f"{duration(seconds)} of one worker."
            )
    return (
        "\n"
        + verdict_html(found, notes, "two-sided Mann-Whitney U", len(ctx.pairs), pending=pending)
        + settled_html(settled, table_html)
    )


VERDICT = Section("verdict", _verdict_tables, _verdict)


def _searched(ctx: Context, tables: Tables, draw: Draw) -> str:
    return f"""
<section id="searched"><h2>What was searched</h2>
<p>Per architecture: complete tuning trials, the most epochs a trial ran, the largest hidden units per layer any
trial used against its search space's ceiling and the budget, and the best configuration's parameters that sit on a bound of their search range
(a best value on a bound means the range, not the tuner, chose it: widen the range or read the result with that
caveat). Where the convergence rule judged a tuning run, these are the bounds 'Is the tuning settled?' names: a
range's latest bounds after any widening, and never the budget's unit ceiling, which the units columns show. For scale, the MMoE paper's tuner ran "thousands of experiments" per method and tuned the number of
training steps.</p>{table_html(tables["searched"])}</section>"""


SEARCHED = Section(
    "searched",
    lambda ctx: {"searched": _searched_judged(ctx), "trials": ctx.data.trials},
    _searched,
)


def _comparison(ctx: Context, tables: Tables, draw: Draw) -> str:
    comp_sections = _comparison_sections(tables["comparison"], ctx.metrics)
    none = '<p class="muted">no retrain results yet: run hpo retrain</p>'
    return f"""
<h2>Test results over seeds</h2>{"".join(comp_sections) or none}"""


COMPARISON = Section("comparison", lambda ctx: {"comparison": ctx.comparison}, _comparison)
RANKS = Section(
    "ranks", no_tables, lambda ctx, tables, draw: f"""
<section id="ranks"><h2>Across tasks</h2>{rank_html(ctx.ranks)}</section>"""
)  # fmt: skip


def _pairs(ctx: Context, tables: Tables, draw: Draw) -> str:
    pairs = tables["pairs"]
    return f"""
<h2>Pairwise comparisons</h2>
<p>P(A beats B): the probability that A's test metric beats B's for one random seed of each, with a bootstrap 95%
interval; p-values are two-sided Mann-Whitney U tests (whose statistic is that probability), Holm-corrected as one
family: every pair on every task in this table ({len(pairs)} tests, the CSV's <code>holm_family_size</code>).</p>
{table_html(pairs)}"""


PAIRS = Section("pairs", lambda ctx: {"pairs": ctx.pairs}, _pairs)
COST = Section("cost", lambda ctx: {"cost": ctx.cost}, lambda ctx, tables, draw: f"""
<h2>Cost</h2>{table_html(tables["cost"])}""")  # fmt: skip


def _figures(ctx: Context, tables: Tables, draw: Draw) -> str:
    figs = figure_list(ctx.data, ctx.pairs) + _across_figures(ctx.data, ctx.metrics, ctx.ranks)
    return "\n<h2>Figures</h2>" + _importance_note(ctx.data) + "".join(draw(t, f) for t, f in figs)


FIGURES = Section("figures", no_tables, _figures)
PROVENANCE = Section("provenance", no_tables, lambda ctx, tables, draw: f"""
<h2>Provenance</h2>{_provenance(ctx.data)}""")  # fmt: skip


def _specification(ctx: Context, tables: Tables, draw: Draw) -> str:
    stored = _set_only(next(iter(ctx.data.study_attrs.values()), {}).get(keys.SPEC, {}))
    return f"""
<h2>Study specification</h2><p class="muted">As stored on the studies, settings that are unset (null or empty)
left out; the search spaces as they were searched.</p><pre>{esc(json.dumps(stored, indent=2))}</pre>"""


SPECIFICATION = Section("specification", no_tables, _specification)


def _provenance(data: ReportData) -> str:
    first = next(iter(data.study_attrs.values()), {})
    prov = first.get(keys.PROVENANCE, {})
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
        ("inputs", _inputs_line(data)),
        ("rows per task", _task_rows_line(data)),
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


def _dataset_info(data: ReportData) -> dict[str, Any]:
    return dict(next(iter(data.study_attrs.values()), {}).get(keys.DATASET, {}))


def _inputs_line(data: ReportData) -> str:
    """Which input path ran: one-hot rows for categorical columns, embedding tables for sparse fields."""
    info = _dataset_info(data)
    if not info:
        return "not recorded"
    line = (
        f"{info.get('continuous_features', 0)} continuous; {info.get('categorical_features', 0)} categorical "
        f"read as one-hot rows (width {info.get('one_hot_width', '?')})"
    )
    sparse = [f for f in info.get("categorical_fields", []) if f.get("path") == "embedding"]
    if sparse:
        fields = ", ".join(
            f"{f['name']} ({f['vocabulary']} rows, width {f.get('dim') or 'field_dim'})" for f in sparse
        )
        line += f"; {len(sparse)} sparse fields read through embedding tables: {fields}"
    return line


def _task_rows_line(data: ReportData) -> str:
    """Rows where each task is defined, per split: a task on a subset (a conversion after a click) is scored on
    those rows only, and a reader needs their count to judge its intervals."""
    info = _dataset_info(data)
    rows = info.get("rows", {})
    parts = []
    for t in info.get("tasks", []):
        defined = t.get("defined_rows")
        shown = defined or rows
        label = "defined on" if defined else "all"
        parts.append(f"{t['name']}: {label} " + ", ".join(f"{s} {n}" for s, n in shown.items()))
    return "; ".join(parts) or "not recorded"


def randomised(data: ReportData) -> str:
    """What varied between seeds, in words (docs/science.md, what a comparison must say, asks every comparison to
    say it)."""
    base = f"weight initialisation (seed s) and data order (seed s + {DATA_SEED_OFFSET})"
    if any(a.get(keys.FRESH_DATA) for a in data.retrain_attrs.values()):
        return (
            f"{base}, and the data itself: every seed draws a fresh synthetic dataset (generator seed "
            "SeedSequence([dataset seed, s]), recorded on each retrain chunk as dataset_seeds)"
        )
    prov = next(iter(data.study_attrs.values()), {}).get(keys.PROVENANCE, {})
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
    info = next(iter(data.study_attrs.values()), {}).get(keys.DATASET, {})
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
