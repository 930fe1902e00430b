"""The verdict a report leads with: per task, which architectures cannot be told apart from the best, by how much
each one trails it, and the caveats the data itself raises.

Everything here is computed from the same seed values and the same pairwise table as the rest of the report, so
each sentence can be checked against the CSVs beside it:

* *tied with the best*: the Holm-corrected p-value of the pair (best, A) in the pairwise table is at least the
  level (the table's test and correction family, named in the sentence);
* *gap*: mean of A minus mean of the best, in metric units, with a BCa bootstrap interval of that difference;
* *resolvable difference*: the smallest true gap that this many seeds would detect with power 0.8 at the level the
  verdict really uses, Holm over the pairwise table's family, whose strictest step is ``a = level / family``, from
  the observed spreads (normal approximation, two samples): ``(z(1 - a/2) + z(0.8)) * sqrt(sa²/na + sb²/nb)``;
* *cannot be separated*: a pair whose smallest attainable corrected p (complete separation of the seeds) is not
  below the level is said to be so, not "tied": no data from that many seeds could have told them apart.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from hpo.estimators import COLLAPSE_SCALES, seed_spread, smallest_corrected_p
from hpo.report.escape import esc
from hpo.report.render import number
from hpo.schema import HIGHER_IS_BETTER

__all__ = [
    "COLLAPSE_AUC",
    "TaskVerdict",
    "caveats",
    "collapse_caveats",
    "collapse_mask",
    "collapse_patterns",
    "collapsed",
    "gap_interval",
    "gate_caveats",
    "resolvable_difference",
    "smallest_corrected_p",
    "span",
    "task_verdict",
    "verdict_html",
    "verdicts",
    "without_collapsed",
]

COLLAPSE_AUC = 0.55  # a seed whose test AUC is at or below this learnt (almost) nothing: chance is 0.5
COLLAPSE_FACTOR = 3.0  # a seed whose test loss is this many times its architecture's median
CEILING_AUC = 0.99
FEW_SEEDS = 10
FEW_TRIALS = 20
POWER = 0.8


def resolvable_difference(
    a: np.ndarray, b: np.ndarray, *, alpha: float = 0.05, power: float = POWER
) -> float:
    """The smallest difference of means two samples of these sizes and spreads detect with ``power``."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return float(z * math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)))


def gap_interval(
    a: np.ndarray, best: np.ndarray, *, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """BCa bootstrap interval of mean(a) - mean(best), the two samples resampled independently."""
    if len(a) < 2 or len(best) < 2:
        return (float("nan"), float("nan"))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            (a, best), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
            confidence_level=level, n_resamples=2000, method="BCa", random_state=np.random.default_rng(seed),
            vectorized=True,
        )  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass
class TaskVerdict:
    task: str
    metric: str
    higher_is_better: bool
    best: str
    tied: list[str] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    resolvable: float = float("nan")


def _holm_p(pairs: pd.DataFrame, task: str, a: str, b: str) -> float:
    rows = pairs[
        (pairs.task == task) & (((pairs.a == a) & (pairs.b == b)) | ((pairs.a == b) & (pairs.b == a)))
    ]
    return float(rows.holm_p.iloc[0]) if len(rows) else float("nan")


def task_verdict(
    task: str,
    metric: str,
    higher: bool,
    values: dict[str, np.ndarray],
    pairs: pd.DataFrame,
    alpha: float = 0.05,
    family: int = 1,
) -> TaskVerdict:
    """Best by mean; the others with their gap, its interval, the pair's corrected p, whether it is tied, and
    the smallest corrected p these seed counts can reach at all (Holm over ``family`` tests): where even that is
    not below the level, the pair cannot be separated, whatever the data, and is said to be so rather than tied.
    The resolvable difference is computed at Holm's strictest level, ``alpha / family``."""
    means = {a: float(np.mean(v)) for a, v in values.items() if len(v)}
    best = max(means, key=lambda a: means[a] if higher else -means[a])
    out = TaskVerdict(task, metric, higher, best)
    resolvable = []
    for arch, v in values.items():
        if arch == best or not len(v):
            continue
        p = _holm_p(pairs, task, best, arch)
        lo, hi = gap_interval(v, values[best], level=1 - alpha)
        tied = not p < alpha
        floor = smallest_corrected_p(len(v), len(values[best]), family)
        if tied:
            out.tied.append(arch)
            resolvable.append(resolvable_difference(v, values[best], alpha=alpha / max(1, family)))
        out.gaps.append(
            {"architecture": arch, "gap": means[arch] - means[best], "ci_low": lo, "ci_high": hi, "holm_p": p,
             "tied_with_best": tied, "smallest_attainable_p": floor, "separable": floor < alpha}
        )  # fmt: skip
    out.resolvable = max(resolvable) if resolvable else float("nan")
    return out


def span(counts: pd.Series) -> str:
    """``"20"`` when every architecture has the same count, else ``"12 to 20"``: a reader checks these against the
    tables, and "20 to 20" reads like a typo."""
    lo, hi = int(counts.min()), int(counts.max())
    return str(lo) if lo == hi else f"{lo} to {hi}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _sample_caveats(seed_results: pd.DataFrame, searched: pd.DataFrame) -> list[str]:
    out: list[str] = []
    if len(seed_results):
        seeds = seed_results.groupby("architecture").size()
        out.append(f"seeds per architecture: {span(seeds)}")
        if seeds.min() < FEW_SEEDS:
            out.append(
                f"few seeds: {int(seeds.min())} (under {FEW_SEEDS}); intervals are wide and tests weak"
            )
        bad = seed_results[seed_results.status != "ok"].groupby("architecture").size()
        out += [
            f"{arch}: {_count(int(n), 'diverged seed')}, left out of every statistic"
            for arch, n in bad.items()
        ]
    if len(searched) and "complete_trials" in searched:
        trials = searched.complete_trials
        per = (
            f"per architecture and tuning replicate ({searched.replicate.nunique()} replicates)"
            if "replicate" in searched
            else "per architecture"
        )
        out.append(f"complete tuning trials {per}: {span(trials)}")
        if trials.min() < FEW_TRIALS:
            out.append(
                f"few tuning trials: {int(trials.min())} (under {FEW_TRIALS}); a better configuration may exist"
            )
    return out


def _bound_caveats(searched: pd.DataFrame) -> list[str]:
    """Best configurations on a bound of their range. Where a seed probe retrained another tuning trial (the
    ``retrained_*`` columns), the verdict compares that one: its own bound hits are named as the range's choice,
    and the best trial's say only that a wider range may hold a better configuration."""
    if not len(searched) or "best_on_bound" not in searched:
        return []
    out = []
    for row in searched.to_dict("records"):
        arch, rep = row["architecture"], row.get("replicate")
        where = f"tuning replicate {rep}" if "replicate" in searched else ""
        bound = row["best_on_bound"] if isinstance(row["best_on_bound"], str) else ""
        other = row.get("retrained_trial")
        if other is None or other != other:  # none, or NaN beside another's: the best trial was retrained
            if bound:
                out.append(
                    f"{arch}'s best configuration{f' ({where})' if where else ''} sits on a search-space "
                    f"bound ({bound}): the range, not the tuner, chose it"
                )
            continue
        moved = row.get("retrained_on_bound")
        moved = moved if isinstance(moved, str) else ""
        if moved:
            out.append(
                f"{arch}'s retrained configuration ({where + '; ' if where else ''}trial {int(other)}, "
                f"chosen by the seed probe) sits on a search-space bound ({moved}): the range, not the "
                "tuner, chose it"
            )
        if bound:
            out.append(
                f"{arch}'s best tuning trial{f' ({where})' if where else ''} sits on a search-space bound "
                f"({bound}): a wider range may hold a better configuration; the seed probe retrained "
                f"trial {int(other)} instead" + ("" if moved else ", on no bound")
            )
    return out


def collapse_mask(x: np.ndarray, metric: str) -> tuple[np.ndarray, str]:
    """Which seeds collapsed, and the rule: a test AUC at or below ``COLLAPSE_AUC`` (chance is 0.5), a loss at
    least ``COLLAPSE_FACTOR`` times the architecture's median seed, or (any metric, from 4 seeds) a seed more than
    ``COLLAPSE_SCALES`` Qn scales (a robust sd) on the worse side of the median of the rest: the rule the tuning's
    seed probe uses (:func:`hpo.estimators.seed_spread`). The last catches a partial collapse (on census, an MMoE
    seed at income AUC 0.843 among seeds at 0.944 +/- 0.0003), which moves a mean over 90 seeds by more than the
    gaps a verdict weighs. Over an architecture's pooled seeds: replicates' configurations differ by far less."""
    x = np.asarray(x, float)
    higher = HIGHER_IS_BETTER.get(metric, True)
    outlier = np.zeros(len(x), bool)
    if len(x) >= 4:
        outlier[seed_spread(x.tolist(), higher_is_better=higher).collapsed] = True
    robust = (
        f"or more than {COLLAPSE_SCALES:g} Qn scales {'below' if higher else 'above'} the median of the rest"
    )
    if metric == "auc":
        return (x <= COLLAPSE_AUC) | outlier, f"test AUC <= {COLLAPSE_AUC}, chance is 0.5, {robust}"
    if metric in ("mse", "logloss") and len(x) >= 3:
        limit = COLLAPSE_FACTOR * float(np.median(x))
        return (
            x >= limit
        ) | outlier, f"test {metric.upper()} >= {COLLAPSE_FACTOR} x its median ({limit:.4g}), {robust}"
    return outlier, f"test {metric.upper()} {robust}" if outlier.any() else ""


def collapsed(x: np.ndarray, metric: str) -> tuple[int, str]:
    """How many seeds collapsed (:func:`collapse_mask`), and the rule."""
    mask, rule = collapse_mask(x, metric)
    return int(mask.sum()), rule


def collapse_patterns(frame: pd.DataFrame, task: str, metric: str, *, selected: bool = False) -> list[str]:
    """Where a crossed retraining's collapsed seeds lie (one ``seed_frame``: architecture, [replicate,] init_seed,
    data_seed, value): per architecture and tuning replicate with a collapse, whether it follows the
    initialisation (every seed of some initialisations collapsed, whatever the data order, and none of the
    others), the data order, or neither. The first says the tuned configuration trains only from some starting
    weights: tuning trained each configuration from one, so it can select such a configuration when that one
    trained (on census, a Shared-Bottom with a 2-unit tower trained in tuning and collapsed for 4 of 6
    initialisations in retraining). The mask is :func:`collapse_mask` over the architecture's pooled seeds, as in
    the counts; a run without at least two initialisations and two data orders says nothing. ``selected``: the
    configurations were chosen by ``retrain.select`` (a mean over several seeds); otherwise the sentence says that
    it would have seen this."""
    out = []
    for arch, g in frame.groupby("architecture", sort=False):
        g = g.assign(collapsed=collapse_mask(g.value.to_numpy(float), metric)[0])
        runs = g.groupby("replicate") if "replicate" in g and g.replicate.nunique() > 1 else [(None, g)]
        for rep, h in runs:
            if h.collapsed.any() and (text := _collapse_pattern(h, selected)):
                out.append(f"{arch}{'' if rep is None else f' (replicate {rep})'} on {task}: {text}")
    return out


def _collapse_pattern(h: pd.DataFrame, selected: bool = False) -> str | None:
    """The sentence for one tuning run's seeds (see :func:`collapse_patterns`)."""
    if h.init_seed.nunique() < 2 or h.data_seed.nunique() < 2 or h.collapsed.sum() < 2:
        return None  # not crossed, or one seed: the counts say it, and one seed shows no pattern
    for factor, noun, other in (
        ("init_seed", "initialisation", "data order"),
        ("data_seed", "data order", "initialisation"),
    ):
        by = h.groupby(factor).collapsed.agg(["all", "any"])
        if bool(by["all"].any()) and bool((by["all"] | ~by["any"]).all()):
            lost = [str(i) for i in by.index[by["all"]]]
            return (
                f"the collapses follow the {noun}: {len(lost)} of {len(by)} {noun}s "
                f"({'seed' if len(lost) == 1 else 'seeds'} {', '.join(lost)}) collapsed "
                f"under every {other} trained so far, the others under none"
                + (
                    "; the configuration trains from some starting weights and not from others (a tuning trial "
                    "trains it from one"
                    + (
                        ", and the probe of retrain.select trained it from too few to see it)"
                        if selected
                        else "; retrain.select chooses the configuration by its mean over several seeds)"
                    )
                    if factor == "init_seed"
                    else ""
                )
            )
    n_init = h.loc[h.collapsed, "init_seed"].nunique()
    n_data = h.loc[h.collapsed, "data_seed"].nunique()
    return (
        f"the {int(h.collapsed.sum())} collapses are spread over {_count(n_init, 'initialisation')} and "
        f"{_count(n_data, 'data order')}, following neither"
    )


def without_collapsed(
    values_by_task: dict[str, dict[str, np.ndarray]], metrics: dict[str, str]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, tuple[int, int]]]]:
    """The seed values with every collapsed seed left out, task by task (a seed that collapsed on one task and
    learnt another stays in the other), and per task the architectures that lost seeds: (left out, of)."""
    kept: dict[str, dict[str, np.ndarray]] = {}
    dropped: dict[str, dict[str, tuple[int, int]]] = {}
    for task, by_arch in values_by_task.items():
        kept[task] = {}
        for arch, values in by_arch.items():
            x = np.asarray(values, float)
            mask, _ = collapse_mask(x, metrics[task])
            kept[task][arch] = x[~mask]
            if mask.any():
                dropped.setdefault(task, {})[arch] = (int(mask.sum()), len(x))
    return kept, dropped


def collapse_caveats(
    found: list[TaskVerdict], again: list[TaskVerdict], dropped: dict[str, dict[str, tuple[int, int]]]
) -> list[str]:
    """Whether each verdict rests on its collapsed seeds: the verdict drawn again with them left out (``again``,
    the same rule over the same Holm family on the seeds that trained). The verdict keeps them, because how often
    a configuration fails is part of what it delivers; a reader who would rerun a failed seed wants the other."""
    out = []
    before = {v.task: v for v in found}
    for v in again:
        if v.task not in dropped or v.task not in before:
            continue
        was = before[v.task]
        lost = ", ".join(f"{a} {n} of {m}" for a, (n, m) in dropped[v.task].items())
        head = f"{v.task} with its collapsed seeds left out ({lost})"
        tied = ", ".join(v.tied) or "none"
        if v.best == was.best and sorted(v.tied) == sorted(was.tied):
            out.append(f"{head}: the verdict stands (best {v.best}; not distinguishable from it: {tied})")
            continue
        gaps = "; ".join(
            f"{g['architecture']} {number(float(g['gap']), signed=True)} (Holm p {float(g['holm_p']):.3g})"
            for g in v.gaps
        )
        out.append(
            f"{head}: the verdict changes, to best {v.best} (was {was.best}); not distinguishable from it: "
            f"{tied}; gaps to it: {gaps}. The collapses decide this verdict: weigh how often each architecture "
            "fails against how well it does when it trains (the CSV verdict_without_collapsed)"
        )
    return out


def _task_caveats(v: TaskVerdict, values: dict[str, np.ndarray]) -> list[str]:
    out: list[str] = []
    for arch, x in values.items():
        n, rule = collapsed(x, v.metric)
        if n:
            out.append(
                f"{arch}: {_count(n, 'collapsed seed')} on {v.task} ({rule}); "
                + ("it stays" if n == 1 else "they stay")
                + " in the statistics"
            )
    if v.metric == "auc" and all(float(np.mean(x)) > CEILING_AUC for x in values.values() if len(x)):
        out.append(f"{v.task} is near its ceiling: every architecture's mean test AUC is above {CEILING_AUC}")
    if v.tied and math.isfinite(v.resolvable):
        out.append(
            f"{v.task}: not enough seeds to resolve a difference of {v.resolvable:.4g} {v.metric.upper()} "
            f"(power {POWER} at Holm's strictest level over the family, from the observed spreads)"
        )
    return out


def caveats(
    verdicts: list[TaskVerdict],
    values: dict[str, dict[str, np.ndarray]],
    seed_results: pd.DataFrame,
    searched: pd.DataFrame,
) -> list[str]:
    """Warnings generated from the data: sample sizes, bound-hitting configurations, collapsed or diverged seeds,
    tasks at their ceiling, and differences too small for the seeds to resolve."""
    out = _sample_caveats(seed_results, searched) + _bound_caveats(searched)
    for v in verdicts:
        out += _task_caveats(v, values[v.task])
    return out


# a gate whose mean weight on one expert (over the test rows and seeds) is at least this chooses it, not mixes
GATE_CHOICE = 0.95


def gate_caveats(gate_use: dict[str, pd.DataFrame]) -> list[str]:
    """The architectures (and tuning replicates) whose retrained gates do not mix experts. A comparison of MMoE
    with Shared-Bottom is about what gating adds; where tuning chose one expert, or every gate settles on one,
    the configuration that won or lost is not using its gates, and the verdict should say so."""
    out = []
    for arch, use in gate_use.items():
        parts = use.groupby("replicate") if "replicate" in use else [(None, use)]
        for rep, u in parts:
            top = u.loc[u.groupby("gate", sort=False)["mean"].idxmax()]
            if top.empty or (top["mean"] < GATE_CHOICE).any():
                continue
            where = arch if rep is None else f"{arch} (tuning replicate {int(rep)})"
            if u.expert.nunique() == 1:
                out.append(
                    f"{where}: its tuned configuration has one expert, so its gates have nothing to mix: in "
                    "structure it is a Shared-Bottom (one network under the task towers)"
                )
                continue
            chosen = list(dict.fromkeys(top.expert))
            out.append(
                f"{where}: every gate puts at least {GATE_CHOICE:.0%} of its weight on one expert on the test "
                f"split ({', '.join(f'{g}: {e}' for g, e in zip(top.gate, top.expert, strict=True))}), so its "
                "gates choose rather than mix"
                + ("; all choose the same expert, in effect one shared network" if len(chosen) == 1 else "")
            )
    return out


def _tie_label(g: dict[str, Any]) -> str:
    if not g["tied_with_best"]:
        return ""
    if not g.get("separable", True):
        return (
            f" (cannot be separated with these seeds: the smallest attainable corrected p is "
            f"{float(g['smallest_attainable_p']):.2g})"
        )
    return " (tied)"


def _task_html(v: TaskVerdict, test: str, family: int, alpha: float) -> str:
    tied = ", ".join(esc(a) for a in v.tied) or "none"
    rows = "".join(
        f"<li>{esc(str(g['architecture']))}: {float(g['gap']):+.4f} {esc(v.metric.upper())} "
        f"[{float(g['ci_low']):+.4f}, {float(g['ci_high']):+.4f}], Holm p {float(g['holm_p']):.3g}"
        f"{_tie_label(g)}</li>"
        for g in v.gaps
    )
    return (
        f"<h3>{esc(v.task)}: test {esc(v.metric.upper())} ({'higher' if v.higher_is_better else 'lower'} is better)"
        f"</h3><p><b>Best: {esc(v.best)}.</b> Not distinguishable from it: <b>{tied}</b> ({esc(test)}, Holm-corrected "
        f"over {family} tests, every pair and task of the pairwise table, at level {alpha}).</p>"
        f"<p>Gap to the best (mean difference, {round(100 * (1 - alpha))}% BCa bootstrap interval):</p><ul>{rows}</ul>"
    )


def verdict_html(
    verdicts: list[TaskVerdict],
    notes: list[str],
    test: str,
    family: int,
    alpha: float = 0.05,
    pending: str = "no retrain results yet: run hpo retrain",
) -> str:
    """The verdict per task with its caveats; without one, ``pending`` (how far the study has come) and the
    caveats the seeds so far already support (a collapse's pattern, a configuration on a bound), marked
    provisional: a reader of a progress report should not wait hours to learn that a configuration fails."""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    if not verdicts:
        so_far = f'<h3>Caveats so far (provisional)</h3><ul class="caveats">{items}</ul>' if notes else ""
        return f'<section id="verdict"><h2>Verdict</h2><p class="muted">{esc(pending)}</p>{so_far}</section>'
    parts = "".join(_task_html(v, test, family, alpha) for v in verdicts)
    return f'<section id="verdict"><h2>Verdict</h2>{parts}<h3>Caveats</h3><ul class="caveats">{items}</ul></section>'


def verdicts(
    values_by_task: dict[str, dict[str, np.ndarray]],
    metrics: dict[str, str],
    pairs: pd.DataFrame,
    alpha: float = 0.05,
) -> list[TaskVerdict]:
    """One verdict per task that has seed values (the headline metric of each task)."""
    return [
        task_verdict(
            task, metric, HIGHER_IS_BETTER[metric], values_by_task[task], pairs, alpha, max(1, len(pairs))
        )
        for task, metric in metrics.items()
        if any(len(v) for v in values_by_task[task].values())
    ]


def gaps_frame(found: list[TaskVerdict]) -> pd.DataFrame:
    """The verdict's numbers as a table (the CSV beside the report)."""
    return pd.DataFrame(
        [{"task": v.task, "metric": v.metric, "best": v.best, **g} for v in found for g in v.gaps]
    )
