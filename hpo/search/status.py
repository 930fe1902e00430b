"""``hpo status``: every study in a storage, its architecture, trials by state, best value and parameters, and
for work still queued, how long it is likely to take from the trials already timed."""

from __future__ import annotations

import math
import statistics
from typing import Any

import optuna

from hpo.storage import keys
from hpo.storage.claims import is_bookkeeping
from hpo.storage.engine import open_storage

__all__ = ["running_trials", "seed_mean", "storage_status", "work_left"]


def storage_status(storage_url: str | None = None) -> list[dict[str, Any]]:
    storage = open_storage(storage_url, heartbeat=False, create=False)
    out = []
    for frozen in storage.get_all_studies():
        if is_bookkeeping(frozen.study_name):  # claims and worker ids on storages without SQL
            continue
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): 0 for s in optuna.trial.TrialState}
        for t in trials:
            counts[t.state.name.lower()] += 1
        entry: dict[str, Any] = {
            "study": frozen.study_name,
            "spec": keys.plain(study.user_attrs).get(keys.SPEC_NAME),
            "architecture": keys.plain(study.user_attrs).get(keys.ARCHITECTURE),
            "directions": [d.name.lower() for d in study.directions],
            "objectives": study.metric_names,
            "trials": counts,
            "surplus": sum(1 for t in trials if keys.plain(t.user_attrs).get(keys.SURPLUS)),
        }
        if running := running_trials(trials):
            entry["running"] = running
        timing = wall_time_left(trials)
        if timing is not None:
            entry["wall_time"] = timing
        attrs = keys.plain(study.user_attrs)
        if (
            keys.TICKETS_TARGET in attrs or keys.STOP_REASON in attrs
        ):  # a convergence budget (trials: {until: settled})
            entry["stop_reason"] = attrs.get(keys.STOP_REASON)
            entry["stopped_at"] = attrs.get(keys.STOPPED_AT)
            entry["settle_history"] = attrs.get(keys.SETTLE_HISTORY, [])
            entry["space_expansions"] = attrs.get(keys.SPACE_EXPANSIONS, [])
        complete = [
            t
            for t in trials
            if t.state == optuna.trial.TrialState.COMPLETE
            and t.values is not None
            and all(map(math.isfinite, t.values))
        ]
        if keys.TUNING_TRIAL in attrs:  # a retraining: its seeds' mean, never a "best" seed
            entry["seeds"] = seed_mean(complete)
        elif complete and len(study.directions) == 1:
            best = study.best_trial
            entry["best"] = {
                "number": best.number,
                "value": best.value,
                "params": best.params,
                "model_config": keys.plain(best.user_attrs).get(keys.MODEL_CONFIG),
            }
        elif complete:
            entry["pareto_front"] = [{"number": t.number, "values": t.values} for t in study.best_trials]
        out.append(entry)
    return out


def wall_time_left(trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any] | None:
    """Training seconds of the complete trials, and the seconds the queued ones are likely to take: the waiting
    and running trials times the mean of the timed ones, for one worker (running trials counted whole, so the
    estimate errs long). The mean, because a sum is wanted: chunks are not alike where some seeds collapse and
    stop early (on census a retrain's median chunk took 7.6 minutes and its mean 19), and a tuning study's trials
    differ by configuration; the shortest and longest are given beside it. ``None`` when nothing is timed or
    nothing is queued."""
    timed = [
        float(w)
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and isinstance(w := keys.plain(t.user_attrs).get(keys.WALL_TIME), int | float)
    ]
    queued = sum(
        t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING) for t in trials
    )
    if not timed or not queued:
        return None
    mean = statistics.fmean(timed)
    return {
        "timed": len(timed),
        "total_s": sum(timed),
        "mean_s": mean,
        "median_s": statistics.median(timed),
        "min_s": min(timed),
        "max_s": max(timed),
        "queued": queued,
        "left_s": queued * mean,
    }


def seed_mean(chunks: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    """A retrain study's seeds so far and their mean objective. Each chunk's value is the mean over its seeds, so
    the chunks are weighted by their seeds. Picking the best chunk, as for a tuning study, would report the
    luckiest seed of a configuration whose point is its spread over seeds."""
    sizes = [len(keys.plain(t.user_attrs).get(keys.SEEDS) or [0]) for t in chunks]
    n = sum(sizes)
    mean = sum(k * t.values[0] for k, t in zip(sizes, chunks, strict=True)) / n if n else None
    return {"trained": n, "mean": mean}


def running_trials(trials: list[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """Each running trial's live attribute (its epoch, validation metric and, for a retraining chunk, the seeds
    still training), as its worker last wrote it: a chunk or trial of a wide configuration runs for half an hour,
    and its state alone says nothing of how far it has come."""
    return [
        {"number": t.number, **(keys.plain(t.user_attrs).get(keys.LIVE) or {})}
        for t in trials
        if t.state == optuna.trial.TrialState.RUNNING
    ]


def work_left(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The storage's queued work in all (:func:`storage_status` entries): each study's estimate summed, for one
    worker and over the trials running now (one per worker), and the queued trials of studies with nothing timed
    yet, which no estimate covers. A retraining of many replicates and the defaults is a dozen studies: its end is
    this sum, not any one line. ``None`` when nothing is queued."""

    def left(e: dict[str, Any]) -> int:
        return int(e["trials"].get("waiting", 0) + e["trials"].get("running", 0))

    timed = [e for e in entries if "wall_time" in e]
    untimed = [e for e in entries if "wall_time" not in e and left(e)]
    if not timed and not untimed:
        return None
    seconds = sum(e["wall_time"]["left_s"] for e in timed)
    running = sum(int(e["trials"].get("running", 0)) for e in entries)
    return {
        "queued": sum(map(left, timed)),
        "studies": len(timed),
        "left_s": seconds,
        "running": running,
        "left_s_over_running": seconds / running if running else None,
        "untimed_studies": len(untimed),
        "untimed_queued": sum(map(left, untimed)),
    }
