"""How far the verdict depends on the tuning budget and on every source of randomness ("show your work").

Four report sections, each with its CSV, computed from the same storage as the rest of the report:

* ``expected-max``: expected best validation score against the number of trials (:mod:`hpo.report.expected_max`),
  with the observed best-so-far of every tuning replicate, and where two architectures' curves cross;
* ``replicates``: per architecture, the retrained test score of each independent tuning run (``replicates``) and
  the winner's curse: the validation score the tuner selected on against the same configuration retrained;
* ``variance``: the test score's variance split into initialisation, data order and residual (a crossed retrain)
  and tuning (between replicates) (:mod:`hpo.report.variance`);
* ``default-vs-tuned``: each architecture's documented default configuration retrained beside its tuned one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hpo.report.collect import ReportData, seed_frame
from hpo.report.escape import esc
from hpo.report.expected_max import Crossing, best_so_far, crossings, expected_max
from hpo.report.figures import COLORS, _layout, band, test_metric
from hpo.report.render import table_html
from hpo.report.section import Context, Draw, Section, Tables
from hpo.report.stats import bootstrap_ci, difference_ci
from hpo.report.variance import (
    METHOD_CROSSED,
    METHOD_ONE_WAY,
    METHOD_REPLICATED,
    crossed_components,
    crossed_intervals,
    one_way_components,
    one_way_interval,
    replicated_crossed_components,
)
from hpo.schema import HIGHER_IS_BETTER

__all__ = [
    "DEFAULT_VS_TUNED",
    "EXPECTED_MAX",
    "REPLICATES",
    "VARIANCE",
    "default_vs_tuned",
    "expected_max_frame",
    "replicate_frame",
    "variance_frame",
]

MODEL_BASED = ("gp", "tpe", "cmaes")


def _archs(data: ReportData) -> list[str]:
    return [a.name for a in data.spec.architectures]


def _complete(data: ReportData) -> pd.DataFrame:
    tr = data.trials
    if tr.empty or "value_0" not in tr:
        return pd.DataFrame(columns=["architecture", "number", "value_0", "replicate"])
    keep = (tr.state == "COMPLETE") & ~tr.get("surplus", pd.Series(False, index=tr.index)).astype(bool)
    out = tr.loc[keep].copy()
    if "replicate" not in out:
        out["replicate"] = 1
    return out[np.isfinite(out.value_0.astype(float))]


# -- expected best against trials -----------------------------------------------------------------------------
def expected_max_frame(data: ReportData, *, seed: int = 0) -> pd.DataFrame:
    """Per architecture and ``k``: the expected best validation objective of ``k`` trials with its bootstrap 95%
    band (all replicates' trials pooled), and the observed best after ``k`` trials averaged over the replicates
    with their min and max."""
    higher = data.directions[:1] != ["minimize"]
    done = _complete(data)
    rows = []
    for arch in _archs(data):
        t = done[done.architecture == arch]
        if t.empty:
            continue
        em = expected_max(t.value_0.to_numpy(dtype=float), higher_is_better=higher, seed=seed)
        runs = [
            best_so_far(g.sort_values("number").value_0.to_numpy(dtype=float), higher_is_better=higher)
            for _, g in t.groupby("replicate")
        ]
        for k, m, lo, hi in zip(em.k, em.mean, em.low, em.high, strict=True):
            seen = [r[k - 1] for r in runs if len(r) >= k]
            rows.append(
                {
                    "architecture": arch,
                    "trials": int(k),
                    "expected_best": float(m),
                    "ci95_low": float(lo),
                    "ci95_high": float(hi),
                    "observed_best_mean": float(np.mean(seen)) if seen else math.nan,
                    "observed_best_min": float(np.min(seen)) if seen else math.nan,
                    "observed_best_max": float(np.max(seen)) if seen else math.nan,
                    "replicates_reaching_k": len(seen),
                }
            )
    return pd.DataFrame(rows)


def _crossings(frame: pd.DataFrame, data: ReportData) -> tuple[str, list[Crossing], int]:
    """The architecture with the best expected score at the largest budget, the last crossing of its curve with
    each other architecture's (the budget from which it stays ahead), and how many crossings there are in all.
    Curves within noise of each other cross back and forth; the last crossing with the leader is what a reader
    acts on ("with fewer than k trials, B looks better than the leader")."""
    curves = {
        a: g.sort_values("trials").expected_best.to_numpy()
        for a, g in frame.groupby("architecture", sort=False)
    }
    higher = data.directions[:1] != ["minimize"]
    found = crossings(curves, higher_is_better=higher)
    ends = {a: c[-1] for a, c in curves.items()}
    leader = (max if higher else min)(ends, key=lambda a: ends[a])
    last: dict[str, Crossing] = {}
    for c in found:
        if leader in (c.before, c.after):
            last[c.before if c.after == leader else c.after] = c
    return leader, sorted(last.values(), key=lambda c: c.k), len(found)


def _expected_max_figure(frame: pd.DataFrame, data: ReportData) -> go.Figure | None:
    if frame.empty:
        return None
    fig = go.Figure()
    for i, arch in enumerate(_archs(data)):
        f = frame[frame.architecture == arch]
        if f.empty:
            continue
        c = COLORS[i % len(COLORS)]
        fig.add_trace(band(f.trials, f.ci95_low, f.ci95_high, c, arch))
        fig.add_trace(go.Scatter(x=f.trials, y=f.expected_best, mode="lines", name=arch, line={"color": c}))
        fig.add_trace(
            go.Scatter(
                x=f.trials,
                y=f.observed_best_mean,
                mode="lines",
                name=f"{arch} observed",
                line={"color": c, "dash": "dot", "shape": "hv"},
                legendgroup=arch,
            )
        )
    for cr in _crossings(frame, data)[1][:6]:  # more would hide the curves; the text lists every one
        fig.add_vline(
            x=cr.k,
            line={"color": "#666", "dash": "dot", "width": 1},
            annotation_text=f"{cr.after} overtakes {cr.before}",
            annotation_textangle=-90,
            annotation_font_size=10,
        )
    name = data.metric_names[0] if data.metric_names else "objective"
    last = int(frame.trials.max())
    fig.update_xaxes(title="trials (k)", tick0=1, dtick=max(1, math.ceil(last / 10)), tickformat="d")
    fig.update_yaxes(title=f"expected best {name}")
    return _layout(
        fig, "expected best validation score of k trials (solid, 95% band); observed best-so-far (dotted)"
    )


def _expected_max_html(frame: pd.DataFrame, data: ReportData) -> str:
    if frame.empty:
        return '<p class="muted">no complete trials</p>'
    leader, found, n_all = _crossings(frame, data)
    n = frame.groupby("architecture").trials.max()
    sampler = data.spec.sampler.name
    if sampler in MODEL_BASED:
        meaning = (
            f"The {esc(sampler)} sampler chose each trial from the earlier ones, so its trials are not exchangeable: "
            "the solid curve is the expected best of k trials drawn at random from those it ran (how good a "
            "random-search study over that sampler's proposals would be), not the result of a k-trial run of the "
            "sampler; the dotted curve is that: the best after k trials as they ran, averaged over the tuning "
            "replicates."
        )
    else:
        meaning = (
            f"The {esc(sampler)} sampler draws trials independently, so the solid curve is the expected best of a "
            "k-trial study of this kind."
        )
    if found:
        items = "".join(f"<li>{esc(c.sentence())}</li>" for c in found)
        cross = (
            f"<p>{esc(leader)} has the best expected score with all the trials run. Where its curve last crosses "
            f"another's (the budget from which it stays ahead):</p><ul>{items}</ul>"
            f'<p class="muted">{n_all} crossings between any two curves in all (curves within noise of each other '
            "cross back and forth); every curve is in the CSV.</p>"
        )
    elif n_all:
        cross = (
            f"<p>{esc(leader)} is ahead at every budget; other curves cross {n_all} times among themselves (every "
            "curve is in the CSV).</p>"
        )
    else:
        cross = (
            "<p>No two expected-best curves cross: the ranking of the tuned scores does not depend on the budget "
            "within the trials run.</p>"
        )
    return (
        "<p>Expected best validation objective of k trials for k = 1 .. n (n = "
        + ", ".join(f"{esc(a)} {int(v)}" for a, v in n.items())
        + " complete trials, every replicate pooled), by the unbiased estimator of Tang et al. (2020) for draws "
        "without replacement (Dodge et al. 2019 drew with replacement, biased upwards near n); the band is a "
        f"percentile bootstrap 95% interval over the trials. {meaning}</p>{cross}"
    )


# -- tuning replicates and the winner's curse -----------------------------------------------------------------
def _main_target(data: ReportData) -> tuple[list[str], str]:
    """The tasks the objective is made of and its metric (``mean`` averages every task)."""
    metrics = test_metric(data)
    tasks = list(metrics)
    if not tasks:
        return [], ""
    main = data.spec.objective.task or tasks[0]
    metric = data.spec.objective.metric or metrics.get(main, "auc")
    return (tasks if data.spec.objective.kind == "mean" else [main]), metric


def _per_seed_objective(
    results: pd.DataFrame, metrics: pd.DataFrame, tasks: list[str], metric: str, split: str
) -> pd.DataFrame:
    frames = [seed_frame(results, metrics, t, metric, split) for t in tasks]
    if not frames or frames[0].empty:
        return pd.DataFrame()
    keys = [c for c in ("architecture", "replicate", "seed") if c in frames[0]]
    joined = pd.concat(frames).groupby(keys, as_index=False).value.mean()
    return joined


def replicate_frame(data: ReportData) -> pd.DataFrame:
    """Per architecture and tuning replicate: the selected trial's validation objective, the same configuration
    retrained (mean over seeds) on validation and test, and the optimism of the selection."""
    tasks, metric = _main_target(data)
    if not tasks or data.seed_results.empty:
        return pd.DataFrame()
    valid = _per_seed_objective(data.seed_results, data.seed_metrics, tasks, metric, "valid")
    test = _per_seed_objective(data.seed_results, data.seed_metrics, tasks, metric, "test")
    attrs = data.retrains_by_replicate
    rows = []
    for (rep, arch), a in sorted(attrs.items(), key=lambda kv: (_archs(data).index(kv[0][1]), kv[0][0])):
        sel = (valid.architecture == arch) & ((valid.replicate == rep) if "replicate" in valid else True)
        tsel = (test.architecture == arch) & ((test.replicate == rep) if "replicate" in test else True)
        chosen = (a.get("tuning_values") or [math.nan])[0]
        v, t = valid.loc[sel, "value"].to_numpy(), test.loc[tsel, "value"].to_numpy()
        rows.append(
            {
                "architecture": arch,
                "replicate": rep,
                "tuning_trial": a.get("tuning_trial"),
                "valid_at_selection": chosen,
                "retrained_valid_mean": float(v.mean()) if len(v) else math.nan,
                "retrained_test_mean": float(t.mean()) if len(t) else math.nan,
                "seeds": len(t),
                "optimism": (chosen - float(v.mean())) * (1 if HIGHER_IS_BETTER.get(metric, True) else -1)
                if len(v)
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _replicates_html(frame: pd.DataFrame, data: ReportData, table: Any) -> tuple[str, go.Figure | None]:
    if frame.empty:
        return '<p class="muted">no retrain results yet: run hpo retrain</p>', None
    tasks, metric = _main_target(data)
    what = f"{'mean ' if len(tasks) > 1 else ''}{metric.upper()} of {', '.join(tasks)}"
    spread = (
        frame.groupby("architecture", sort=False)
        .retrained_test_mean.agg(replicates="count", lowest="min", highest="max", sd="std")
        .reset_index()
    )
    spread["range"] = spread.highest - spread.lowest
    if data.replicates == 1:
        lead = (
            "<p>One tuning run per architecture (<code>replicates: 1</code>): the table shows the winner's curse, "
            "but whether another tuning run would choose as well cannot be told. Set <code>replicates: 3</code> or "
            "more in the study to measure it.</p>"
        )
    else:
        lead = (
            f"<p>{data.replicates} independent tuning runs per architecture (sampler and training seeds differ, the "
            "budget is the same); each run's best configuration was retrained over the seeds. The spread of the "
            "retrained test score across runs is the part of a result that comes from the tuner, which a single "
            "tuning run hides.</p>"
        )
    curse = (
        f"<p>Winner's curse: <code>valid_at_selection</code> is the validation {esc(what)} of the trial the tuner "
        "picked as best; <code>retrained_valid_mean</code> is the same configuration retrained from fresh seeds, "
        "on the same validation split. Picking the best of many noisy trials favours lucky ones, so "
        "<code>optimism</code> (selection minus retrained, in the direction of better) is expected to be positive; "
        "its size is how much the tuning score overstates what the configuration delivers.</p>"
    )
    fig = go.Figure()
    for i, arch in enumerate(_archs(data)):
        f = frame[frame.architecture == arch]
        if f.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=f.valid_at_selection,
                y=f.retrained_valid_mean,
                mode="markers",
                name=arch,
                marker={"color": COLORS[i % len(COLORS)], "size": 9},
                text=[f"replicate {r}" for r in f.replicate],
            )
        )
    lo = float(np.nanmin(frame[["valid_at_selection", "retrained_valid_mean"]].to_numpy()))
    hi = float(np.nanmax(frame[["valid_at_selection", "retrained_valid_mean"]].to_numpy()))
    fig.add_trace(
        go.Scatter(
            x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "#999", "dash": "dash"}, name="no optimism"
        )
    )
    fig.update_xaxes(title=f"validation {what} at selection")
    fig.update_yaxes(title=f"retrained validation {what} (mean over seeds)")
    _layout(fig, "winner's curse: selection score against the same configuration retrained")
    return lead + table(spread) + curse + table(frame), fig


# -- variance by source ---------------------------------------------------------------------------------------
FACTOR_NAMES = {"heldout_split": "heldout_split", "init_seed": "init", "data_seed": "data_order"}


def _with_split(f: pd.DataFrame, data: ReportData, arch: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The frame with its crossed factors: init and data order, and the held-out split (from the seed and the
    stored design) when the design drew the held-out rows more than once."""
    reps = f["replicate"] if "replicate" in f else pd.Series(1, index=f.index)
    attrs = data.replicate_attrs.get((int(reps.iloc[0]), arch)) or data.retrain_attrs.get(arch, {})
    cross = attrs.get("cross") or {}
    if cross.get("splits", 1) > 1:
        return f.assign(heldout_split=f.seed // (cross["init"] * cross["data"])), tuple(FACTOR_NAMES)
    return f, ("init_seed", "data_seed")


def variance_frame(data: ReportData) -> pd.DataFrame:
    """Per architecture and task: variance components of the test metric (standard deviations, in metric units,
    and shares of their sum). Crossed components are estimated within each replicate and averaged."""
    rows = []
    for task, metric in test_metric(data).items():
        frame = seed_frame(data.seed_results, data.seed_metrics, task, metric)
        for arch in _archs(data):
            f = frame[frame.architecture == arch]
            if f.empty:
                continue
            groups = [g for _, g in f.groupby("replicate")] if "replicate" in f else [f]
            row: dict[str, Any] = {"architecture": arch, "task": task, "metric": metric, "seeds": len(f)}
            comps, intervals = _components_of(groups, data, arch, row)
            total = sum(v for v in comps.values() if math.isfinite(v))
            for name, v in comps.items():
                row[f"sd_{name}"] = math.sqrt(v) if math.isfinite(v) else math.nan
                row[f"share_{name}"] = v / total if total > 0 and math.isfinite(v) else math.nan
            for name, (lo, hi) in intervals.items():
                row[f"sd_{name}_ci95_low"], row[f"sd_{name}_ci95_high"] = math.sqrt(lo), math.sqrt(hi)
            rows.append(row)
    return pd.DataFrame(rows)


def _components_of(
    groups: list[pd.DataFrame], data: ReportData, arch: str, row: dict[str, Any]
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """One architecture-task's variance components (variances, by name) and their 95% intervals; fills the
    row's ``design``, ``method`` and ``set_to_zero``. Replicates retrained on one crossed seed grid use the
    estimator built for that design; a single crossed design the crossed ANOVA; paired seeds the one-way one."""
    split = [_with_split(g, data, arch) for g in groups]
    factors = split[0][1]
    comps: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    rep = replicated_crossed_components([g for g, _ in split], factors) if len(groups) > 1 else None
    crossed = [c for c in (crossed_components(g, fs) for g, fs in split) if c is not None]
    if rep is not None:
        for factor in factors:
            comps[FACTOR_NAMES[factor]] = rep.factors[factor]
            intervals[FACTOR_NAMES[factor]] = rep.intervals[factor]
        comps["residual"], intervals["residual"] = rep.residual, rep.intervals["residual"]
        comps["tuning"], intervals["tuning"] = rep.tuning, rep.intervals["tuning"]
        row["design"] = _design(rep.levels) + f", {rep.replicates} replicates"
        row["method"] = "replicated crossed"
        row["set_to_zero"] = ", ".join(sorted(FACTOR_NAMES.get(t, t) for t in rep.truncated))
        return comps, intervals
    if crossed:
        for factor in crossed[0].factors:
            comps[FACTOR_NAMES[factor]] = float(np.mean([c.factors[factor] for c in crossed]))
        comps["residual"] = float(np.mean([c.residual for c in crossed]))
        if len(crossed) == 1:
            intervals = {FACTOR_NAMES.get(k, k): v for k, v in crossed_intervals(crossed[0]).items()}
        row["design"] = _design(crossed[0].levels) + (
            f", {len(crossed)} replicates" if len(crossed) > 1 else ""
        )
        row["method"] = "crossed"
        row["set_to_zero"] = ", ".join(sorted({FACTOR_NAMES[t] for c in crossed for t in c.truncated}))
    else:
        within = [g.value.var(ddof=1) for g in groups if len(g) > 1]
        comps["seed"] = float(np.mean(within)) if within else math.nan
        if len(groups) == 1 and within:  # one sample's variance: the chi-square interval
            from scipy.stats import chi2

            dof = len(groups[0]) - 1
            intervals["seed"] = (
                dof * within[0] / chi2.ppf(0.975, dof),
                dof * within[0] / chi2.ppf(0.025, dof),
            )
        row["design"] = "paired seeds (init and data order vary together)"
        row["method"] = "one-way"
        row["set_to_zero"] = ""
    one_way = one_way_components([g.value.to_numpy() for g in groups]) if len(groups) > 1 else None
    if one_way is not None:
        comps["tuning"] = one_way.between
        ci = one_way_interval(one_way, [len(g) for g in groups])
        intervals["tuning"] = ci["between"]
        if not crossed:
            intervals["seed"] = ci["within"]
        if one_way.truncated:
            row["set_to_zero"] = ", ".join(filter(None, [row["set_to_zero"], "tuning"]))
    return comps, intervals


def _design(levels: dict[str, int]) -> str:
    return " x ".join(f"{n} {FACTOR_NAMES[k].replace('_', ' ')}" for k, n in levels.items())


def _variance_figure(frame: pd.DataFrame) -> go.Figure | None:
    shares = [c for c in frame.columns if c.startswith("share_")]
    if frame.empty or not shares:
        return None
    labels = [f"{a} ({t})" for a, t in zip(frame.architecture, frame.task, strict=True)]
    fig = go.Figure()
    for i, col in enumerate(shares):
        fig.add_trace(
            go.Bar(
                y=labels,
                x=frame[col],
                name=col.removeprefix("share_").replace("_", " "),
                orientation="h",
                marker_color=COLORS[i % len(COLORS)],
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="share of the test-score variance", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "variance of each task's test metric by source", 140 + 28 * len(frame))


def _variance_html(frame: pd.DataFrame, data: ReportData, table: Any) -> str:
    if frame.empty:
        return '<p class="muted">no retrain results yet: run hpo retrain</p>'
    crossed = frame.design.str.contains(" x ").any()
    parts = []
    if crossed:
        parts.append(
            f"Initialisation, data order{', held-out split' if 'sd_heldout_split' in frame else ''} and residual: "
            f"{METHOD_CROSSED}."
        )
        if "sd_heldout_split" in frame:
            parts.append(
                "A held-out split is one random division of the pooled validation and test rows into two sets of "
                "the original sizes (split 0 is the dataset's own); the training rows never change."
            )
    else:
        parts.append(
            "Every retrain seed varies initialisation and data order together, so their variances cannot be told "
            "apart: set <code>retrain: {cross: {init: 5, data: 5}}</code> to cross them (and <code>splits: 3"
            "</code> to redraw the held-out rows)."
        )
    if data.replicates > 1 and (frame.get("method") == "replicated crossed").any():
        parts.append(f"Tuning: {METHOD_REPLICATED}.")
    elif data.replicates > 1:
        parts.append(f"Tuning: {METHOD_ONE_WAY}.")
    else:
        parts.append("Tuning variance needs <code>replicates</code> of 2 or more.")
    parts.append(
        "Columns <code>sd_*</code> are standard deviations in metric units (the square roots of the components), "
        "<code>share_*</code> each component's share of their sum, <code>sd_*_ci95_low</code> and <code>_high"
        "</code> the 95% interval of each (parametric bootstrap of the same random-effects model: every "
        "component at its estimate, the design simulated again and estimated again, 1,000 times); "
        "<code>set_to_zero</code> names components whose estimate was negative (in at least one replicate) and "
        "was set to 0 there."
    )
    if "sd_heldout_split" not in frame:
        parts.append(
            "The held-out rows were split once, so their sampling variance is not part of these figures."
        )
    return "<p>" + " ".join(parts) + "</p>" + table(frame)


# -- default against tuned -------------------------------------------------------------------------------------
def default_vs_tuned(data: ReportData, *, seed: int = 0) -> pd.DataFrame:
    """Per architecture and task: the default configuration's and the tuned configuration's test mean with their
    bootstrap 95% intervals, and the gain from tuning (positive: tuning helped) with its interval."""
    if data.default_metrics.empty:
        return pd.DataFrame()
    rows = []
    for task, metric in test_metric(data).items():
        sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
        tuned = seed_frame(data.seed_results, data.seed_metrics, task, metric)
        default = seed_frame(data.default_results, data.default_metrics, task, metric)
        for arch in _archs(data):
            t = tuned.loc[tuned.architecture == arch, "value"].to_numpy(dtype=float)
            d = default.loc[default.architecture == arch, "value"].to_numpy(dtype=float)
            if not len(t) or not len(d):
                continue
            lo, hi = difference_ci(sign * t, sign * d, seed=seed)
            cfg = data.default_attrs.get(arch, {})
            rows.append(
                {
                    "architecture": arch,
                    "task": task,
                    "metric": metric,
                    "default_mean": float(d.mean()),
                    "default_ci95": _interval(bootstrap_ci(d, seed=seed)),
                    "default_seeds": len(d),
                    "tuned_mean": float(t.mean()),
                    "tuned_ci95": _interval(bootstrap_ci(t, seed=seed)),
                    "tuned_seeds": len(t),
                    "gain": float(sign * (t.mean() - d.mean())),
                    "gain_ci95_low": lo,
                    "gain_ci95_high": hi,
                    "default_configuration": _describe(cfg),
                }
            )
    return pd.DataFrame(rows)


def _interval(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]" if all(map(math.isfinite, ci)) else ""


def _describe(attrs: dict[str, Any]) -> str:
    model = attrs.get("model_config") or {}
    train = attrs.get("train_config") or {}
    items = [f"{k}={v}" for k, v in model.items()]
    items += [f"{k}={train[k]}" for k in ("optimizer", "lr", "epochs") if k in train]
    return ", ".join(items)


def _default_html(frame: pd.DataFrame, data: ReportData, table: Any) -> str:
    if not data.spec.retrain.default:
        return (
            '<p class="muted">The default configurations were not retrained: set <code>retrain: {default: true}'
            "</code> in the study and run <code>hpo retrain</code> again to see what tuning gained.</p>"
        )
    if frame.empty:
        return '<p class="muted">the default configurations have no retrain results yet: run hpo retrain</p>'
    gained = frame[frame.gain_ci95_low > 0]
    lost = frame[frame.gain_ci95_high < 0]
    summary = (
        f"Tuning improved {len(gained)} of {len(frame)} architecture-task results beyond their 95% interval"
        + (f" and made {len(lost)} worse" if len(lost) else "")
        + "."
    )
    short = frame[frame.default_seeds < data.spec.retrain.seeds]
    if len(short):  # the defaults retrain last: a report written while they run says how far they have come
        counts = ", ".join(
            sorted({f"{a} {n}" for a, n in zip(short.architecture, short.default_seeds, strict=True)})
        )
        summary += (
            f" Provisional: the default configurations' retraining is in progress (seeds so far of "
            f"{data.spec.retrain.seeds}: {counts})."
        )
    return (
        "<p>Each architecture's documented default (its constructor's defaults, listed by <code>hpo models</code>, "
        "and the study's <code>training</code> block with the trainer's default optimiser settings) retrained over "
        "the same seeds as the tuned configuration. <code>gain</code> is tuned minus default in the direction of "
        "better, with a bootstrap 95% interval of the difference of means (BCa). "
        f"{summary}</p>" + table(frame)
    )


def _figure(draw: Draw, title: str, figure: go.Figure | None) -> str:
    return "" if figure is None else draw(title, figure)


def _expected_max_section(ctx: Context, tables: Tables, draw: Draw) -> str:
    em, data = tables["expected_max"], ctx.data
    return f"""
<section id="expected-max"><h2>Tuning budget: expected best against trials</h2>{_expected_max_html(em, data)}
{_figure(draw, "Expected best against trials", _expected_max_figure(em, data))}</section>"""


def _replicates_section(ctx: Context, tables: Tables, draw: Draw) -> str:
    reps_html, curse_fig = _replicates_html(tables["replicates"], ctx.data, table_html)
    return f"""
<section id="replicates"><h2>Tuning replicates and the winner's curse</h2>{reps_html}
{_figure(draw, "Winner's curse", curse_fig)}</section>"""


def _variance_section(ctx: Context, tables: Tables, draw: Draw) -> str:
    var = tables["variance"]
    return f"""
<section id="variance"><h2>Variance by source</h2>{_variance_html(var, ctx.data, table_html)}
{_figure(draw, "Variance by source", _variance_figure(var))}</section>"""


def _default_section(ctx: Context, tables: Tables, draw: Draw) -> str:
    return f"""
<section id="default-vs-tuned"><h2>Default against tuned</h2>{_default_html(tables["default_vs_tuned"], ctx.data, table_html)}</section>"""


EXPECTED_MAX = Section(
    "expected-max", lambda ctx: {"expected_max": expected_max_frame(ctx.data)}, _expected_max_section
)
REPLICATES = Section("replicates", lambda ctx: {"replicates": replicate_frame(ctx.data)}, _replicates_section)
VARIANCE = Section("variance", lambda ctx: {"variance": variance_frame(ctx.data)}, _variance_section)
DEFAULT_VS_TUNED = Section(
    "default-vs-tuned", lambda ctx: {"default_vs_tuned": default_vs_tuned(ctx.data)}, _default_section
)
