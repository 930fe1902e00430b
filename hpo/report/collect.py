"""Read everything a report needs from the storage (tuning trials, retrain chunks, seed results) into tables.

The report layer only reads: it never trains and never writes to the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from hpo.config.study import StudySpec
from hpo.errors import ConfigError
from hpo.report.searched import searched_row
from hpo.storage.engine import mask_url, normalise_url, open_storage
from hpo.storage.naming import retrain_study_name
from hpo.storage.results import read_seed_metrics, read_seed_results

__all__ = ["ReportData", "collect", "trials_frame"]


@dataclass
class ReportData:
    spec: StudySpec
    storage: str
    trials: pd.DataFrame
    seed_results: pd.DataFrame
    seed_metrics: pd.DataFrame
    study_attrs: dict[str, dict[str, Any]]
    retrain_attrs: dict[str, dict[str, Any]]
    gate_use: dict[str, pd.DataFrame] = field(default_factory=dict)
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    directions: list[str] = field(default_factory=list)
    metric_names: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    code_revisions: list[str] = field(default_factory=list)
    searched: pd.DataFrame = field(default_factory=pd.DataFrame)


def trials_frame(study: optuna.Study, arch: str) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "architecture": arch,
            "number": t.number,
            "state": t.state.name,
            "ticket": t.user_attrs.get("ticket"),
            "retry_of": t.system_attrs.get("failed_trial"),
            "surplus": bool(t.user_attrs.get("surplus", False)),
            "parameter_count": t.user_attrs.get("parameter_count"),
            "max_units_per_layer": max(t.user_attrs.get("units_per_layer") or [0]) or None,
            "units_per_layer": "/".join(map(str, t.user_attrs.get("units_per_layer") or [])),
            "wall_time": t.user_attrs.get("wall_time"),
            "epochs_run": t.user_attrs.get("epochs_run"),
            "device": t.user_attrs.get("device"),
            "pruned_reason": t.user_attrs.get("pruned_reason"),
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
        }
        for i, v in enumerate(t.values or []):
            row[f"value_{i}"] = v
        for k, v in t.params.items():
            row[f"param_{k}"] = v
        for split, tasks in (t.user_attrs.get("metrics") or {}).items():
            for task, ms in tasks.items():
                for m, v in ms.items():
                    row[f"{split}_{task}_{m}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def collect(spec: StudySpec, storage_url: str | None = None) -> ReportData:
    url = normalise_url(storage_url)
    storage = open_storage(url, heartbeat=False, create=False)
    frames, attrs, retrain_attrs, gate_use, importances = [], {}, {}, {}, {}
    directions: list[str] = []
    metric_names: list[str] = []
    versions: dict[str, str] = {}
    revisions: set[str] = set()
    searched: list[dict[str, Any]] = []
    for arch in (a.name for a in spec.architectures):
        try:
            study = optuna.load_study(study_name=spec.study_name(arch), storage=storage)
        except KeyError:
            raise ConfigError(
                f"no study {spec.study_name(arch)} in {mask_url(url)}; run `hpo run` first"
            ) from None
        directions = [d.name.lower() for d in study.directions]
        metric_names = study.metric_names or []
        frames.append(trials_frame(study, arch))
        searched.append(searched_row(arch, study, spec.budget))
        for t in study.get_trials(deepcopy=False):
            versions.update(t.user_attrs.get("versions") or {})
            if t.user_attrs.get("code_revision"):
                revisions.add(t.user_attrs["code_revision"])
        attrs[arch] = dict(study.user_attrs)
        complete = [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values and all(map(math.isfinite, t.values))
        ]
        if len(study.directions) == 1 and len(complete) >= 3:
            try:
                importances[arch] = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
                )
            except (RuntimeError, ValueError):
                importances[arch] = {}
        try:
            rs = optuna.load_study(study_name=retrain_study_name(spec.name, arch), storage=storage)
        except KeyError:
            continue
        retrain_attrs[arch] = dict(rs.user_attrs)
        uses = [
            u
            for t in rs.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            for u in t.user_attrs.get("gate_utilisation", [])
        ]
        if uses:
            gate_use[arch] = (
                pd.DataFrame(uses).groupby(["gate", "expert"], sort=False, as_index=False)["mean"].mean()
            )
    return ReportData(
        spec=spec,
        storage=mask_url(url),
        trials=pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
        seed_results=read_seed_results(url, spec.name),
        seed_metrics=read_seed_metrics(url, spec.name),
        study_attrs=attrs,
        retrain_attrs=retrain_attrs,
        gate_use=gate_use,
        importances=importances,
        directions=directions,
        metric_names=metric_names,
        versions=versions,
        code_revisions=sorted(revisions),
        searched=pd.DataFrame(searched),
    )
