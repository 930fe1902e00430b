"""Tuning until the verdict is settled: the stopping rule of ``trials: {min, max, until: settled}``.

A comparison is only as fair as the tuning behind it, and a fixed number of trials favours small spaces and stops
big ones before they converge. So an architecture keeps tuning while more trials are still expected to matter,
by one rule for all:

* when every queued trial of an architecture has finished (at ``min`` first, then after each extension), the
  expected best validation score of all ``n`` finished trials (a pruned one counts with its best validation
  value before it was stopped: :func:`rule_values`) is compared with that of ``n / 2`` of them (Tang et
  al.'s unbiased estimator, :func:`hpo.estimators.doubling_gain`): the gain of the last doubling, with its 95%
  bootstrap interval over the trials (:func:`hpo.estimators.doubling_gain_interval`);
* it is **settled** when that whole interval lies below the tolerance (a point gain under it is not enough: four
  trials can show no gain by luck, with an interval several times the tolerance; the interval needs at least
  four finished trials) and its best configuration sits on no bound of its
  space (a best value on a bound says the range, not the tuning, stopped it; the budget's own ceiling on units
  is not such a bound); it stops at **max** when it has run ``max`` trials; otherwise ``grow`` x n more tickets
  are queued (never past ``max``), and a bound hit on a parameter that allows it (``expand``) widens that side of
  its range first (:mod:`hpo.search.widen`, recorded as ``space_expansions``);
* ``tolerance: auto`` puts tuning noise and seed noise on one scale: it is the smallest difference the
  retraining can resolve, :func:`hpo.estimators.resolvable_gap` at ``retrain.seeds`` seeds and Holm over every
  pair of architectures, with the per-seed spread measured once, by training the best configuration after
  ``min`` trials with ``probe_seeds`` seeds (recorded on the study as ``seed_sd``, every seed's value in
  ``seed_sd_probe``; a seed that collapsed is left out of the spread: :func:`hpo.estimators.seed_spread`; with
  fewer than three healthy seeds the probe is topped up once, then no tolerance: :func:`tolerance_of`).

Decisions are taken under the study's claim lock, after checking again that nothing is waiting or running and
that no other worker decided first, so any number of workers queue each extension once, never pass ``max`` and
never stop an architecture twice; the decision and its numbers are recorded on the study (``tickets_target``,
``settle_history``, ``stop_reason`` in ``settled | max | timeout``, ``stopped_at``, ``bound_hits``), which is
what makes it resumable: ``hpo run`` again queues up to the recorded target and adds nothing to a stopped study.
The one exception is a ``settled`` stop whose tolerance came from a seed spread that a revised rule reads
differently (the spread is recomputed from the recorded seed values at every judgement): if today's tolerance
would not have settled it, the study is reopened and extended, recorded as such (:func:`reopen`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import optuna

from hpo.config.space import SearchSpace
from hpo.config.study import StudySpec, TrialBudget
from hpo.estimators import SeedSpread, doubling_gain, doubling_gain_interval, resolvable_gap, seed_spread
from hpo.search.widen import current_spaces, widen
from hpo.storage import keys
from hpo.storage.locks import claim_lock

log = logging.getLogger(__name__)

__all__ = [
    "FINAL",
    "Decision",
    "bound_hits",
    "bound_sides",
    "decide",
    "mark_timeout",
    "reopen",
    "resume_target",
    "rule_values",
    "settle",
    "tolerance_of",
]

FINAL = ("settled", "max")  # a study stopped for these reasons gets no more trials; "timeout" resumes
BOUND_SHARE = 0.01  # a float within this share of its range (in its own scale) of a bound is on the bound
S = optuna.trial.TrialState
Side = Literal["low", "high"]


@dataclass(frozen=True)
class Decision:
    """What the rule made of ``trials`` finished trials: stop (and why) or the next ticket target."""

    trials: int
    gain: float
    gain_high: float  # the upper end of the gain's 95% bootstrap interval: what the rule compares
    tolerance: float
    bound_hits: list[str]
    stop_reason: str | None
    next_target: int

    def record(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "gain": self.gain if math.isfinite(self.gain) else None,
            "gain_high": self.gain_high if math.isfinite(self.gain_high) else None,
            "tolerance": self.tolerance if math.isfinite(self.tolerance) else None,
            "bound_hits": self.bound_hits,
            "decision": self.stop_reason or f"extend to {self.next_target}",
        }


def decide(
    values: Sequence[float],
    *,
    higher_is_better: bool,
    target: int,
    rule: TrialBudget,
    tolerance: float,
    hits: list[str],
) -> Decision:
    """The rule itself, a pure function of the finished trials' values and the state of the budget."""
    x = np.asarray(values, dtype=float)
    gain = doubling_gain(x, higher_is_better=higher_is_better)
    high = doubling_gain_interval(x, higher_is_better=higher_is_better)[1]
    if math.isfinite(high) and math.isfinite(tolerance) and high < tolerance and not hits:
        return Decision(target, gain, high, tolerance, hits, "settled", target)
    if target >= rule.max:
        return Decision(target, gain, high, tolerance, hits, "max", target)
    grown = min(rule.max, target + max(1, math.ceil(rule.grow * target)))
    return Decision(target, gain, high, tolerance, hits, None, grown)


def rule_values(trials: Sequence[optuna.trial.FrozenTrial], higher_is_better: bool) -> list[float]:
    """The values the rule judges: every complete trial's, and every pruned trial's best reported validation
    value before it was stopped. A pruner stops the worse trials; leaving them out would judge the better half
    as if it were every draw (a narrower spread, a smaller gain, an early stop), while their best value so far
    keeps them where they belong, low in the order, which is what the expected best of n depends on."""
    pick = max if higher_is_better else min
    out = []
    for t in trials:
        if t.state == S.COMPLETE and t.value is not None:
            out.append(float(t.value))
        elif t.state == S.PRUNED and t.intermediate_values:
            out.append(float(pick(t.intermediate_values.values())))
    return out


def bound_hits(params: dict[str, Any], spaces: Sequence[SearchSpace], budget: int) -> list[str]:
    """The numeric parameters of ``params`` that sit on a bound of their range, as ``name=value (low|high)``.
    Bounds no wider range could move are not hits: an integer whose upper bound reaches the budget (a units count
    at the ceiling every architecture shares), and an integer at a lower bound of 1 or less (one layer, one
    expert: a count cannot go lower)."""
    return [f"{name}={params[name]:g} ({side} bound)" for name, side in bound_sides(params, spaces, budget)]


def bound_sides(params: dict[str, Any], spaces: Sequence[SearchSpace], budget: int) -> list[tuple[str, Side]]:
    """:func:`bound_hits` as ``(name, side)`` pairs."""
    out: list[tuple[str, Side]] = []
    for space in spaces:
        for name, r in space.params.items():
            if name not in params or r.type not in ("int", "float") or r.low is None or r.high is None:
                continue
            v = float(params[name])
            lo, hi = float(r.low), float(r.high)
            if r.type == "int":
                at_low, at_high = v <= lo and lo > 1, v >= hi and hi < budget
            else:
                scale = (lambda x: math.log(x)) if r.log and lo > 0 else (lambda x: x)
                span = scale(hi) - scale(lo)
                at_low = scale(v) - scale(lo) <= BOUND_SHARE * span
                at_high = scale(hi) - scale(v) <= BOUND_SHARE * span
            if at_low or at_high:
                out.append((name, "low" if at_low else "high"))
    return out


def _attrs(study: optuna.Study) -> dict[str, Any]:
    return keys.plain(study.user_attrs)


def resume_target(study: optuna.Study, rule: TrialBudget) -> int:
    """How many tickets a (re)run queues for a convergence budget: the recorded target, at least ``min``. A study
    stopped by ``timeout`` continues from where it was."""
    attrs = _attrs(study)
    if attrs.get("stop_reason") == "timeout":
        study.set_user_attr(keys.key(keys.STOP_REASON), None)
    target = max(rule.min, int(attrs.get("tickets_target") or 0))
    if "tickets_target" not in attrs:
        study.set_user_attr(keys.key(keys.TICKETS_TARGET), target)
    return target


# the healthy seeds a spread must rest on; a probe with fewer is topped up once, then gives no tolerance
MIN_HEALTHY = 3


def tolerance_of(
    url: str,
    study: optuna.Study,
    spec: StudySpec,
    probe: Any,
    higher_is_better: bool = True,
    chance: float | None = None,
) -> float:
    """The study's tolerance: the rule's number, or (``auto``) the resolvable difference of the retraining with
    the per-seed spread of the best configuration after ``min`` trials, measured by ``probe(trial, n, start)``
    (each seed's value, seeds ``start..start+n``) and recorded with every value in ``seed_sd_probe``.

    The spread is computed again from the recorded values at every judgement (:func:`hpo.estimators.seed_spread`,
    which leaves out seeds that collapsed: at ``chance`` or far on the worse side of the others), so a revised
    rule applies to studies measured before it without training again. A probe whose healthy seeds number fewer
    than :data:`MIN_HEALTHY` is topped up once with as many new seeds (a spread from two seeds has one degree of
    freedom: its 95% interval spans a factor of 70); still fewer, and there is no tolerance: nothing is called
    settled, tuning runs to ``max``. A record without values (kept before they were) is probed again. Every
    replaced figure is kept in ``seed_sd_superseded``."""
    rule = spec.budget_rule
    assert rule is not None
    if rule.tolerance != "auto":
        return float(rule.tolerance)
    spread = _measured_spread(url, study, rule, probe, higher_is_better, chance)
    pairs = max(1, spec.family * (spec.family - 1) // 2)
    if spread.used < MIN_HEALTHY or not math.isfinite(spread.sd):
        return float("nan")
    return resolvable_gap(spread.sd, spec.retrain.seeds, comparisons=pairs)


def _measured_spread(
    url: str, study: optuna.Study, rule: TrialBudget, probe: Any, higher_is_better: bool, chance: float | None
) -> SeedSpread:
    """The recorded probe's spread under today's rule, probing (or topping up) first where it must."""
    record = _attrs(study).get(keys.SEED_SD_PROBE) or {}
    if "values" in record:
        trial = int(record["trial"])
        values = [float("nan") if v is None else float(v) for v in record["values"]]
    else:
        trial, values = study.best_trial.number, []
    if not values:
        values = _run_probe(study, trial, probe, rule.probe_seeds, 0)
    spread = seed_spread(values, higher_is_better=higher_is_better, chance=chance)
    if spread.used < MIN_HEALTHY and len(values) < 2 * rule.probe_seeds:
        log.info(
            "%s: %s, fewer than %d healthy: topping the probe up",
            study.study_name,
            spread.describe(),
            MIN_HEALTHY,
        )
        values += _run_probe(study, trial, probe, rule.probe_seeds, len(values))
        spread = seed_spread(values, higher_is_better=higher_is_better, chance=chance)
    _record_spread(url, study, trial, spread)
    return spread


def _run_probe(study: optuna.Study, trial: int, probe: Any, n: int, start: int) -> list[float]:
    """Train trial ``trial``'s configuration on probe seeds ``start..start+n`` (outside any lock: it trains).

    Each part's values are written to ``seed_sd_partial`` as they finish, and a probe of the same trial and
    seeds that a stopped worker left part-way is taken up where it stopped: a wide configuration's seeds train
    one at a time on a CPU, for hours in all (a seed's value depends only on the configuration and the seed)."""
    done = _partial_probe(study, trial, start)[:n]
    log.info(
        "%s: measuring the spread between seeds for the settled rule's tolerance: trial %d's configuration "
        "trained again on %d seeds (once per study, and once more if too few are healthy; no trial runs "
        "meanwhile in this worker)%s",
        study.study_name, trial, n, f"; {len(done)} finished before a stop, reused" if done else "",
    )  # fmt: skip
    started = time.monotonic()
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial)

    finished = list(done)

    def record(part: list[float]) -> None:
        finished.extend(float(v) for v in part)
        stored = [v if math.isfinite(v) else None for v in finished]
        study.set_user_attr(
            keys.key(keys.SEED_SD_PARTIAL), {"trial": trial, "start": start, "values": stored}
        )

    if len(done) < n:
        done += [float(v) for v in probe(frozen, n - len(done), start + len(done), on_part=record)]
    log.info("%s: %d probe seeds trained in %.0f s", study.study_name, n, time.monotonic() - started)
    return done


def _partial_probe(study: optuna.Study, trial: int, start: int) -> list[float]:
    """The values a stopped probe of ``trial``'s configuration finished from seed ``start`` on (none when the
    partial record is of another trial or seed range)."""
    held = _attrs(study).get(keys.SEED_SD_PARTIAL) or {}
    if held.get("trial") != trial or held.get("start") != start:
        return []
    return [float("nan") if v is None else float(v) for v in held.get("values") or []]


def _record_spread(url: str, study: optuna.Study, trial: int, spread: SeedSpread) -> None:
    """Write the probe's record where it changed (unless another worker recorded more seeds meanwhile: the same
    configuration), keeping the figure it replaces."""
    record = {
        "trial": trial,
        "seeds": len(spread.values),
        "values": [v if math.isfinite(v) else None for v in spread.values],
        "failed": spread.failed,
        "collapsed": spread.collapsed,
        "summary": spread.describe(),
    }
    sd = spread.sd if math.isfinite(spread.sd) and spread.used >= MIN_HEALTHY else None
    with claim_lock(url, study.study_name):
        now = _attrs(study)
        held = now.get(keys.SEED_SD_PROBE) or {}
        if held == record and now.get(keys.SEED_SD) == sd:
            return
        if len(held.get("values") or []) > len(spread.values):
            return
        if keys.SEED_SD in now:
            old = {"seed_sd": now[keys.SEED_SD], "probe": held}
            if keys.SEED_SD_SUPERSEDED in now:
                old["earlier"] = now[keys.SEED_SD_SUPERSEDED]
            study.set_user_attr(keys.key(keys.SEED_SD_SUPERSEDED), old)
        study.set_user_attr(keys.key(keys.SEED_SD), sd)
        study.set_user_attr(keys.key(keys.SEED_SD_PROBE), record)
        log.info("%s: %s", study.study_name, spread.describe())


def _g(x: float | None) -> str:
    return "(none)" if x is None else f"{x:.3g}"


def reopen(url: str, study: optuna.Study, rule: TrialBudget, tolerance: float, enqueue: Any) -> bool:
    """Take back a ``settled`` stop that today's tolerance would not have made (the spread it came from was
    revised, or measured again because its record kept no per-seed values: :func:`tolerance_of`): the study is
    extended as its judgement would then have extended it, or, already at ``max``, stops there (``max``, not
    settled), with the reopening and both tolerances in ``settle_history``. True when it was extended."""
    with claim_lock(url, study.study_name):
        attrs = _attrs(study)
        history = attrs.get(keys.SETTLE_HISTORY) or []
        if (
            attrs.get(keys.STOP_REASON) != "settled"
            or not history
            or history[-1].get("decision") != "settled"
        ):
            return False
        last = history[-1]
        high = last.get("gain_high")
        if math.isfinite(tolerance) and high is not None and high < tolerance:
            if not math.isclose(tolerance, last.get("tolerance") or math.nan, rel_tol=1e-9):
                confirmed = {  # today's tolerance settles it too: say so, with the tolerance it now rests on
                    **{k: last.get(k) for k in ("trials", "gain", "gain_high", "bound_hits")},
                    "tolerance": tolerance,
                    "decision": "settled",
                    "why": f"judged again under a revised tolerance ({_g(last.get('tolerance'))} -> "
                    f"{tolerance:.3g}); the gain's upper end {_g(high)} is still under it",
                }
                study.set_user_attr(keys.key(keys.SETTLE_HISTORY), [*history, confirmed])
            return False
        target = int(last["trials"])
        grown = min(rule.max, target + max(1, math.ceil(rule.grow * target)))
        entry = {
            "trials": target,
            "gain": last.get("gain"),
            "gain_high": high,
            "tolerance": tolerance if math.isfinite(tolerance) else None,
            "bound_hits": last.get("bound_hits", []),
            "decision": f"reopened: extend to {grown}" if grown > target else "max",
            "why": f"its settled stop used a tolerance of {_g(last.get('tolerance'))} from a seed spread since"
            f" revised; the gain's upper end {_g(high)} is not under "
            + (
                f"{tolerance:.3g}"
                if math.isfinite(tolerance)
                else "a tolerance (too few healthy probe seeds)"
            ),
        }
        study.set_user_attr(keys.key(keys.SETTLE_HISTORY), [*history, entry])
        log.warning("%s: %s (%s)", study.study_name, entry["decision"], entry["why"])
        if grown == target:  # already at max: it stops there, not settled
            study.set_user_attr(keys.key(keys.STOP_REASON), "max")
            return False
        study.set_user_attr(keys.key(keys.STOP_REASON), None)
        study.set_user_attr(keys.key(keys.STOPPED_AT), None)
        study.set_user_attr(keys.key(keys.TICKETS_TARGET), grown)
        enqueue(study, grown)
        return True


def settle(
    url: str,
    study: optuna.Study,
    spec: StudySpec,
    *,
    higher_is_better: bool,
    spaces: Sequence[SearchSpace],
    probe: Any,
    enqueue: Any,
    fits: Callable[[SearchSpace], bool] = lambda space: True,
    chance: float | None = None,
) -> bool:
    """Called by a worker that found every queued trial of ``study`` finished: apply the rule once. Return True
    when more tickets were queued (or another worker queued some), False when the architecture is done.
    ``spaces`` are the declared ones (the widenings recorded on the study are applied here); ``fits`` says
    whether a widened model space still keeps every configuration within the budget."""
    rule = spec.budget_rule
    if rule is None:
        return False
    reason = _attrs(study).get(keys.STOP_REASON)
    if reason == "settled" and rule.tolerance == "auto":  # settled by a tolerance that may since be revised
        return reopen(
            url, study, rule, tolerance_of(url, study, spec, probe, higher_is_better, chance), enqueue
        )
    if reason in FINAL:
        return False
    # nothing to judge (every trial failed or was pruned): a rerun retries the failed tickets
    if not [t for t in study.get_trials(deepcopy=False) if t.state == S.COMPLETE]:
        return False
    tolerance = tolerance_of(url, study, spec, probe, higher_is_better, chance)  # may train: outside the lock
    with claim_lock(url, study.study_name):
        trials = study.get_trials(deepcopy=False)
        if any(t.state in (S.WAITING, S.RUNNING) for t in trials):
            return True  # another worker extended it meanwhile
        attrs = _attrs(study)
        if attrs.get(keys.STOP_REASON) in FINAL:
            return False
        target = max(rule.min, int(attrs.get(keys.TICKETS_TARGET) or 0))
        if not _tickets_done(trials, target):
            return False  # a failed ticket: the next run queues it again, then the rule is applied
        now = current_spaces(study, spaces)
        best = study.best_trial.params
        d = decide(
            rule_values(trials, higher_is_better),
            higher_is_better=higher_is_better,
            target=target,
            rule=rule,
            tolerance=tolerance,
            hits=bound_hits(best, now, spec.budget),
        )
        wider = (
            []
            if d.stop_reason
            else widen(now, bound_sides(best, now, spec.budget), budget=spec.budget, trials=target, fits=fits)
        )
        _record(study, attrs, d, wider)
        if d.stop_reason is not None:
            return False
        enqueue(study, d.next_target)
        return True


def _tickets_done(trials: Sequence[optuna.trial.FrozenTrial], target: int) -> bool:
    """Whether every ticket under ``target`` finished (complete or pruned)."""
    done = {keys.plain(t.user_attrs).get(keys.TICKET) for t in trials if t.state in (S.COMPLETE, S.PRUNED)}
    return len({d for d in done if d is not None and d < target}) >= target


def _record(study: optuna.Study, attrs: dict[str, Any], d: Decision, wider: list[dict[str, Any]]) -> None:
    """Write a judgement on the study: its history entry (with any widening), the bound hits, the widened ranges,
    and either why tuning stopped or the next ticket target."""
    shown = [
        f"{w['param']} {w['from'][0]:g}..{w['from'][1]:g} -> {w['to'][0]:g}..{w['to'][1]:g}" for w in wider
    ]
    entry = d.record() | ({"widened": shown} if shown else {})
    study.set_user_attr(keys.key(keys.SETTLE_HISTORY), [*attrs.get(keys.SETTLE_HISTORY, []), entry])
    study.set_user_attr(keys.key(keys.BOUND_HITS), d.bound_hits)
    if wider:
        study.set_user_attr(keys.key(keys.SPACE_EXPANSIONS), [*attrs.get(keys.SPACE_EXPANSIONS, []), *wider])
    if d.stop_reason is not None:
        study.set_user_attr(keys.key(keys.STOP_REASON), d.stop_reason)
        study.set_user_attr(keys.key(keys.STOPPED_AT), d.trials)
    else:
        study.set_user_attr(keys.key(keys.TICKETS_TARGET), d.next_target)


def mark_timeout(url: str, study: optuna.Study) -> None:
    """A convergence budget cut by ``timeout_minutes`` says so (and a later run resumes it)."""
    with claim_lock(url, study.study_name):
        if _attrs(study).get("stop_reason") in FINAL:
            return
        done = sum(1 for t in study.get_trials(deepcopy=False) if t.state in (S.COMPLETE, S.PRUNED))
        study.set_user_attr(keys.key(keys.STOP_REASON), "timeout")
        study.set_user_attr(keys.key(keys.STOPPED_AT), done)
        study.set_user_attr(keys.key(keys.TIMEOUT_AT), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
