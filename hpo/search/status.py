"""``hpo status``: every study in a storage, its architecture, trials by state, best value and parameters."""

from __future__ import annotations

import math
from typing import Any

import optuna

from hpo.storage import keys
from hpo.storage.claims import is_bookkeeping
from hpo.storage.engine import open_storage

__all__ = ["storage_status"]


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
        if complete and len(study.directions) == 1:
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
