"""The report's ``#settled`` section: per architecture, how settled its tuning is, read against its own trials.

A verdict is only as fair as the tuning behind it. For each architecture this section gives the tuning trials that
finished, the budget and why tuning stopped (``settled``, ``max``, ``timeout`` from a ``trials: {until: settled}``
budget, or a fixed count), what the last doubling of trials bought (E[best of n] - E[best of n/2], Tang et al.'s
estimator, with a percentile bootstrap interval over the trials: the best available estimate of what doubling
them again would buy, which a diminishing-returns curve only lowers), the tolerance it was held to, the best
configuration's parameters on a bound of their range, and one sentence on whether more tuning could change the
verdict. An architecture that is not settled is named among the verdict's caveats.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

from hpo.config.study import TrialBudget
from hpo.estimators import doubling_gain, doubling_gain_interval
from hpo.report.data import ReportData
from hpo.report.render import number
from hpo.storage import keys

__all__ = ["judged_bounds", "settled_frame", "settled_html", "tuning_progress", "unsettled_caveat"]


def _row(
    arch: str,
    trials: pd.DataFrame,
    attrs: dict[str, Any],
    higher: bool,
    on_bound: str,
    replicate: int | None = None,
) -> dict[str, Any]:
    mine = trials[trials.architecture == arch]
    if replicate is not None:
        mine = mine[mine.replicate == replicate]
    done = mine[mine.state == "COMPLETE"]
    pruned = mine[mine.state == "PRUNED"]
    if attrs.get(keys.BOUND_HITS) is not None:  # what the rule itself judged, for this replicate
        on_bound = "; ".join(attrs[keys.BOUND_HITS])
    widened = "; ".join(
        f"{w['param']} {w['from'][0]:g}..{w['from'][1]:g} -> {w['to'][0]:g}..{w['to'][1]:g} at {w['trials']} trials"
        for w in attrs.get(keys.SPACE_EXPANSIONS) or []
    )
    values = done["value_0"].to_numpy(dtype=float) if "value_0" in done else np.array([])
    if "best_intermediate" in pruned:  # as the rule counts them (hpo.search.settle.rule_values)
        values = np.concatenate([values, pruned["best_intermediate"].to_numpy(dtype=float)])
    values = values[np.isfinite(values)]
    gain = doubling_gain(values, higher_is_better=higher)
    lo, hi = doubling_gain_interval(values, higher_is_better=higher)
    rule = (attrs.get("spec") or {}).get("trials")
    history = attrs.get("settle_history") or []
    tolerance = history[-1].get("tolerance") if history else None
    reason = attrs.get("stop_reason") if isinstance(rule, dict) else None
    if isinstance(rule, dict):
        budget = f"{rule.get('min')} to {rule.get('max')}, until settled"
    else:
        budget = f"fixed: {rule}" if rule is not None else "fixed"
    settled = reason == "settled"
    probed, left_out = _probe_summary(attrs)
    return {
        "architecture": arch,
        **({"replicate": replicate} if replicate is not None else {}),
        "trials": len(done),
        "pruned": len(pruned),
        "budget": budget,
        "stop_reason": reason or ("fixed budget" if not isinstance(rule, dict) else RUNNING),
        "last_doubling_gain": gain,
        "gain_ci_low": lo,
        "gain_ci_high": hi,
        "tolerance": tolerance if tolerance is not None else float("nan"),
        "tolerance_probe": probed,
        "best_on_bound": on_bound,
        "ranges_widened": widened,
        "settled": settled,
        "sentence": _sentence(settled, reason, len(done) + len(pruned), gain, (lo, hi), tolerance, on_bound)
        + _notes(widened, probed if left_out else "", history),
    }


def _notes(widened: str, left_out: str, history: list[dict[str, Any]]) -> str:
    """The sentence's additions: widened ranges, a probe that left seeds out, and any settled stop taken back."""
    out = f" Ranges widened on a bound hit: {widened}." if widened else ""
    if left_out:
        out += (
            f" The tolerance's probe: {left_out}; a collapsed seed says how often this configuration fails, which"
            " its retraining shows."
        )
    return out + "".join(  # a settled stop taken back under a revised tolerance (hpo.search.settle.reopen)
        f" Judged again at {h['trials']} trials ({h.get('decision')}): {h['why']}."
        for h in history
        if h.get("why")
    )


def _probe_summary(attrs: dict[str, Any]) -> tuple[str, bool]:
    """What the tolerance's seed probe measured (``tolerance: auto``), and whether it left a seed out."""
    probe = attrs.get(keys.SEED_SD_PROBE) or {}
    superseded = attrs.get(keys.SEED_SD_SUPERSEDED)
    probed = str(probe.get("summary") or "")
    if probed and superseded:
        sd = superseded.get("seed_sd")
        earlier = f"{sd:.3g}" if isinstance(sd, int | float) else str(sd)
        probed += f" (revised; an earlier figure, {earlier}, replaced)"
    return probed, bool(probe.get("collapsed") or probe.get("failed"))


def _sentence(
    settled: bool,
    reason: str | None,
    n: int,
    gain: float,
    ci: tuple[float, float],
    tolerance: float | None,
    on_bound: str,
) -> str:
    g = number(gain, signed=True) if math.isfinite(gain) else "not measurable"
    band = (
        f" [{number(ci[0], signed=True)}, {number(ci[1], signed=True)}]"
        if all(map(math.isfinite, ci))
        else ""
    )
    tol = f"the tolerance {number(tolerance)}" if tolerance is not None else "no tolerance (a fixed budget)"
    if settled:
        return (
            f"Settled after {n} trials: the last doubling gained {g}{band}, under {tol}, with the best "
            "configuration off every bound; more tuning is unlikely to change the verdict."
        )
    why = {"max": f"stopped at its maximum of {n} trials", "timeout": f"cut by the timeout after {n} trials"}
    head = why.get(reason or "", f"{n} trials")
    bound = f"; best on a bound: {on_bound}" if on_bound else ""
    return (
        f"Not settled ({head}): the last doubling gained {g}{band} against {tol}{bound}; more tuning may "
        "change the verdict."
    )


def settled_frame(data: ReportData) -> pd.DataFrame:
    """One row per architecture, or per architecture and tuning replicate where tuning was replicated (each
    replicate is a tuning run of its own, stopped by the rule on its own trials)."""
    higher = (data.directions or ["maximize"])[0] == "maximize"
    bounds = _searched_bounds(data.searched)
    if not len(data.trials):
        return pd.DataFrame()
    if "replicate" in data.trials:
        keys_ = sorted(data.replicate_study_attrs, key=lambda k: (_order(data, k[1]), k[0]))
        rows = [
            _row(
                a,
                data.trials,
                data.replicate_study_attrs[(r, a)],
                higher,
                bounds.get((a, r), bounds.get((a, None), "")),
                r,
            )
            for r, a in keys_
        ]
    else:
        rows = [
            _row(
                a.name, data.trials, data.study_attrs.get(a.name, {}), higher, bounds.get((a.name, None), "")
            )
            for a in data.spec.architectures
            if (None, a.name) not in data.not_started
        ]
    rows += [_not_started_row(arch, rep, data) for rep, arch in data.not_started]
    return pd.DataFrame(rows)


def _searched_bounds(searched: pd.DataFrame) -> dict[tuple[str, int | None], str]:
    """The best trial's bound hits from the "what was searched" table, per architecture and tuning replicate
    where it has replicates (``None`` where it has not): what a row shows before the rule has judged."""
    if not {"architecture", "best_on_bound"} <= set(searched.columns):
        return {}
    reps = searched["replicate"] if "replicate" in searched else [None] * len(searched)
    return {
        (str(a), int(r) if r is not None and r == r else None): str(b or "")
        for a, r, b in zip(searched.architecture, reps, searched.best_on_bound, strict=True)
    }


def _not_started_row(arch: str, replicate: int | None, data: ReportData) -> dict[str, Any]:
    """A progress report's row for an architecture (replicate) with no tuning trial yet."""
    rule = data.spec.trials
    budget = f"{rule.min} to {rule.max}, until settled" if isinstance(rule, TrialBudget) else f"fixed: {rule}"
    nan = float("nan")
    return {
        "architecture": arch,
        **({"replicate": replicate} if replicate is not None else {}),
        "trials": 0,
        "pruned": 0,
        "budget": budget,
        "stop_reason": NOT_STARTED,
        "last_doubling_gain": nan,
        "gain_ci_low": nan,
        "gain_ci_high": nan,
        "tolerance": nan,
        "tolerance_probe": "",
        "best_on_bound": "",
        "ranges_widened": "",
        "settled": False,
        "sentence": "Not started: no tuning trial yet.",
    }


NOT_STARTED = "not started"
RUNNING = "running or not judged"
STOPPED = ("settled", "max", "timeout")


def tuning_progress(frame: pd.DataFrame) -> str:
    """What a report with no retrained seed says in place of a verdict: how far tuning has come, so that a
    progress report is never read as a finished one."""
    if frame.empty or "stop_reason" not in frame:
        return "no retrain results yet: run hpo retrain"
    reasons = frame.stop_reason
    if (reasons == "fixed budget").any():  # a fixed count of trials: nothing to say about convergence
        return "No verdict yet: no seed has been retrained. Run hpo retrain once tuning has finished."
    stopped = reasons.isin(STOPPED)
    counts = ", ".join(f"{n} {r}" for r, n in reasons[stopped].value_counts().items())
    unit = "architecture-replicates" if "replicate" in frame else "architectures"
    said = f"{int(stopped.sum())} of {len(frame)} {unit} have stopped tuning" + (
        f" ({counts})" if counts else ""
    )
    for label, reason in (("still tuning", RUNNING), ("not started", NOT_STARTED)):
        if (reasons == reason).any():
            said += f"; {label}: " + ", ".join(_label(r) for r in frame[reasons == reason].itertuples())
    then = "Next, hpo retrain" if stopped.all() else "Once every one has stopped, hpo retrain"
    return (
        f"No verdict yet: no seed has been retrained. Tuning: {said}. {then} trains the best configurations on "
        "the retraining seeds, and the verdict comes from those."
    )


def _order(data: ReportData, arch: str) -> int:
    names = [a.name for a in data.spec.architectures]
    return names.index(arch) if arch in names else len(names)


def unsettled_caveat(frame: pd.DataFrame) -> list[str]:
    """The verdict's caveat naming every architecture whose tuning is not settled."""
    if frame.empty or frame.settled.all():
        return []
    names = ", ".join(
        f"{_label(r)} ({r.stop_reason}, last doubling {number(r.last_doubling_gain, signed=True)})"
        for r in frame.itertuples()
        if not r.settled
    )
    return [
        f"tuning is not settled for: {names}; the verdict may change with more tuning (see 'Is the tuning settled?')"
    ]


def judged_bounds(searched: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``searched`` with each best configuration's bound hits as the convergence rule judged them, where the
    settled frame has them: against the ranges as widened (a best trial drawn before a widening is on no bound
    of the wider range) and with the budget's unit ceiling no bound. The verdict's bound caveats then say what
    `#settled` says, not what the best trial's own, older, distributions say."""
    if frame.empty or not {"architecture", "best_on_bound"} <= set(searched.columns) & set(frame.columns):
        return searched
    by = ["architecture", "replicate"] if {"replicate"} <= set(searched.columns) & set(frame.columns) else []
    by = by or ["architecture"]

    def rows(table: pd.DataFrame) -> list[tuple[tuple[Any, ...], str]]:
        """(architecture[, replicate as int]), bound; a NaN replicate (not started) keeps NaN, matching nothing."""
        return [
            ((str(key[0]), *(int(r) if r == r else r for r in key[1:])), bound)
            for *key, bound in table[[*by, "best_on_bound"]].itertuples(index=False)
        ]

    judged = dict(rows(frame))
    out = searched.copy()
    out["best_on_bound"] = [judged.get(key, bound) for key, bound in rows(searched)]
    return out


def _label(r: Any) -> str:
    rep = getattr(r, "replicate", None)
    return f"{r.architecture} (replicate {int(rep)})" if rep is not None and rep == rep else r.architecture


def settled_html(frame: pd.DataFrame, table: Any) -> str:
    """The section, right after the verdict."""
    if frame.empty:
        return ""
    sentences = "".join(
        f"<li><b>{html.escape(_label(r))}</b>: {html.escape(r.sentence)}</li>" for r in frame.itertuples()
    )
    return (
        '<section id="settled"><h2>Is the tuning settled?</h2><p>Per architecture (and tuning replicate): the '
        "tuning trials that finished, the budget and why tuning stopped, what the last doubling of trials bought (expected best of "
        "n minus expected best of n/2, Tang et al.'s estimator, with a 95% bootstrap interval over the trials: "
        "the best estimate of what doubling them again would buy), the tolerance the rule held it to "
        "(<code>trials: {until: settled}</code>; with <code>tolerance: auto</code> the smallest difference the "
        "retraining can resolve, from the spread between seeds that retraining the best configuration on a few "
        "seeds measured, with any seed that collapsed left out and named), the best configuration's parameters on a bound of their range, and the ranges "
        "the rule widened where a parameter allowed it (<code>expand</code>).</p>"
        f"<ul>{sentences}</ul>{table(frame.drop(columns=['sentence']))}</section>"
    )
