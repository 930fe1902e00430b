"""Read everything a report needs from the storage (tuning trials, retrain chunks, seed results) into tables,
or from the folder of tables that ``hpo export`` wrote (``hpo.report.tables``).

The report layer only reads: it never trains and never writes to the database.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpo.config.naming import retrain_study_name
from hpo.config.study import StudySpec
from hpo.errors import ConfigError
from hpo.report.data import ReportData
from hpo.report.searched import searched_row
from hpo.report.tables import FORMAT, TABLES, attrs_of, read_default_tables, read_tables, write_tables
from hpo.storage import keys
from hpo.storage.engine import mask_url, normalise_url, open_storage
from hpo.storage.results import read_seed_curves, read_seed_metrics, read_seed_results

__all__ = ["ReportData", "collect", "export", "read_default", "seed_frame", "trials_frame"]


def seed_frame(
    results: pd.DataFrame, metrics: pd.DataFrame, task: str, metric: str, split: str = "test"
) -> pd.DataFrame:
    """One row per successful seed with its value of (split, task, metric) and its seeds (and replicate)."""
    if metrics.empty or results.empty:
        return pd.DataFrame(columns=["architecture", "seed", "init_seed", "data_seed", "value"])
    on = [
        "architecture",
        "seed",
        *(["replicate"] if "replicate" in metrics and "replicate" in results else []),
    ]
    sel = metrics[(metrics.split == split) & (metrics.task == task) & (metrics.metric == metric)]
    ok = results.loc[results.status == "ok", [*on, "init_seed", "data_seed"]]
    return sel.merge(ok, on=on)


def trials_frame(study: optuna.Study, arch: str) -> pd.DataFrame:
    rows = []
    pick = max if len(study.directions) == 1 and study.direction.name == "MAXIMIZE" else min
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "architecture": arch,
            "number": t.number,
            "state": t.state.name,
            "ticket": keys.plain(t.user_attrs).get(keys.TICKET),
            "retry_of": t.system_attrs.get(keys.OPTUNA_FAILED_TRIAL),
            "surplus": bool(keys.plain(t.user_attrs).get(keys.SURPLUS, False)),
            "parameter_count": keys.plain(t.user_attrs).get(keys.PARAMETER_COUNT),
            "max_units_per_layer": max(keys.plain(t.user_attrs).get(keys.UNITS_PER_LAYER) or [0]) or None,
            "units_per_layer": "/".join(map(str, keys.plain(t.user_attrs).get(keys.UNITS_PER_LAYER) or [])),
            "wall_time": keys.plain(t.user_attrs).get(keys.WALL_TIME),
            "proposal_seconds": keys.plain(t.user_attrs).get(keys.PROPOSAL_SECONDS),
            "threads": keys.plain(t.user_attrs).get(keys.THREADS),
            "epochs_run": keys.plain(t.user_attrs).get(keys.EPOCHS_RUN),
            "device": keys.plain(t.user_attrs).get(keys.DEVICE),
            "pruned_reason": keys.plain(t.user_attrs).get(keys.PRUNED_REASON),
            # a pruned trial's best validation value before it was stopped (what the settled rule counts)
            "best_intermediate": pick(t.intermediate_values.values()) if t.intermediate_values else None,
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
        }
        for i, v in enumerate(t.values or []):
            row[f"value_{i}"] = v
        for k, v in t.params.items():
            row[f"param_{k}"] = v
        for split, tasks in (keys.plain(t.user_attrs).get(keys.METRICS) or {}).items():
            for task, ms in tasks.items():
                for m, v in ms.items():
                    row[f"{split}_{task}_{m}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


MIN_FANOVA_TRIALS = 20  # fANOVA fits a random forest on the trials: on fewer it ranks noise with confidence


def _importance(study: optuna.Study) -> dict[str, float] | None:
    """fANOVA importance of a single-objective study with at least :data:`MIN_FANOVA_TRIALS` finite complete
    trials (None otherwise: the report says how many each architecture had)."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.values and all(map(math.isfinite, t.values))
    ]
    if len(study.directions) != 1 or len(complete) < MIN_FANOVA_TRIALS:
        return None
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (RuntimeError, ValueError):
        return {}


def _gate_use(retrain: optuna.Study) -> pd.DataFrame | None:
    uses = [
        u
        for t in retrain.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        for u in keys.plain(t.user_attrs).get(keys.GATE_UTILISATION, [])
    ]
    if not uses:
        return None
    return pd.DataFrame(uses).groupby(["gate", "expert"], sort=False, as_index=False)["mean"].mean()


def _load(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def read_default(spec: StudySpec, storage_url: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seed results and metrics of the default configurations' retraining (``retrain.default``)."""
    url = normalise_url(storage_url)
    name = spec.default_spec().name
    return read_seed_results(url, name), read_seed_metrics(url, name)


def collect(
    spec: StudySpec,
    storage_url: str | None = None,
    tables: str | Path | None = None,
    *,
    partial: bool = False,
) -> ReportData:
    """Everything the report shows, read from the storage (which must exist: nothing is created here) or, with
    ``tables``, from a folder that ``hpo export`` wrote. A spec with replicates pools its replicate studies (frames
    gain a ``replicate`` column); ``retrain.default`` adds the default configurations' seeds. ``partial``: a long
    run's progress (what ``hpo export --partial`` wrote, or a storage it is still filling): the architectures and
    replicates with no tuning trial yet are left out and named in ``not_started``, where without it they are an
    error, so that a report never passes a missing study off as a finished one."""

    def one(sub: StudySpec) -> ReportData:
        if tables is None:
            return _collect_one(sub, storage_url, partial=partial)
        try:
            return read_tables(sub, tables)
        except ConfigError as exc:
            if not partial:
                raise ConfigError(f"{exc}; `hpo report --partial` reports what exists so far") from None
            return _nothing_yet(sub)

    data = _collect_replicates(spec, one) if spec.replicates > 1 else one(spec)
    if data.trials.empty:
        raise ConfigError(f"nothing of {spec.name} has a tuning trial yet; run `hpo run {spec.source}` first")
    if spec.retrain.default and spec.replicate_point is None:  # a replicate's own data has no default rows
        try:
            read = (
                read_default_tables(spec, tables) if tables is not None else _default_data(spec, storage_url)
            )
        except ConfigError:
            if not partial:
                raise
            read = pd.DataFrame(), pd.DataFrame(), {}  # not retrained yet, so not exported yet
        data.default_results, data.default_metrics, data.default_attrs = read
    return data


def _nothing_yet(spec: StudySpec) -> ReportData:
    """A (sub-)study none of whose architectures has started: no rows, every architecture named."""
    data = ReportData(spec, "", pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}, {})
    data.not_started = [(_replicate_of(spec), a.name) for a in spec.architectures]
    return data


def _replicate_of(spec: StudySpec) -> int | None:
    return int(spec.replicate_point["index"]) if spec.replicate_point else None


def _default_data(
    spec: StudySpec, storage_url: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """The default configurations' seed results and metrics, and each default retrain study's attributes."""
    results, metrics = read_default(spec, storage_url)
    storage = open_storage(normalise_url(storage_url), heartbeat=False, create=False)
    attrs = {}
    for arch in (a.name for a in spec.architectures):
        if (study := _load(storage, retrain_study_name(spec.default_spec().name, arch))) is not None:
            attrs[arch] = dict(keys.plain(study.user_attrs))
    return results, metrics, attrs


def export(
    base: StudySpec,
    storage_url: str | None,
    folder: str | Path,
    fmt: str = "csv",
    *,
    partial: bool = False,
    skipped: list[str] | None = None,
) -> list[Path]:
    """Write every sub-study of ``base`` (and its default configurations' seeds) as tables into ``folder`` (see
    ``hpo.report.tables``). Everything is read before anything is written, so a missing storage or study leaves
    no folder behind. ``partial``: a long run's progress, exported before it ends: sub-studies (replicates, the
    default configurations) that do not exist yet are left out and named in ``skipped``."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format must be csv or parquet, got {fmt!r}")
    parts: list[tuple[str, str, Any]] = []
    for spec in base.expand():
        try:
            data = _collect_one(spec, storage_url)
        except ConfigError as exc:
            if not partial:
                raise ConfigError(f"{exc}; `hpo export --partial` exports what exists so far") from None
            if skipped is not None:
                skipped.append(spec.name)
            continue
        parts += [(spec.name, t, getattr(data, t)) for t in TABLES] + [(spec.name, "attrs", attrs_of(data))]
    if not parts:
        raise ConfigError(f"nothing of {base.name} exists in {mask_url(normalise_url(storage_url))} yet")
    if base.retrain.default and partial and not _has_default(base, storage_url):
        if skipped is not None:
            skipped.append(base.default_spec().name)
    elif base.retrain.default:
        results, metrics, default_attrs = _default_data(base, storage_url)
        name = base.default_spec().name
        parts += [
            (name, "seed_results", results),
            (name, "seed_metrics", metrics),
            (name, "attrs", {"format": FORMAT, "default_attrs": default_attrs}),
        ]
    return write_tables(parts, folder, fmt)


def _has_default(base: StudySpec, storage_url: str | None) -> bool:
    storage = open_storage(normalise_url(storage_url), heartbeat=False, create=False)
    names = {s.study_name for s in storage.get_all_studies()}
    return any(retrain_study_name(base.default_spec().name, a.name) in names for a in base.architectures)


def _collect_replicates(spec: StudySpec, one: Callable[[StudySpec], ReportData]) -> ReportData:
    """The replicates' data pooled, each row labelled with its replicate (1-based)."""
    parts = [(int((sub.replicate_point or {})["index"]), one(sub)) for sub in spec.expand()]
    first = next((d for _, d in parts if not d.trials.empty), parts[0][1])  # a replicate that has started

    def pooled(frames: list[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
        kept = [f.assign(replicate=r) for r, f in frames if not f.empty]
        if kept:
            return pd.concat(kept, ignore_index=True)
        # nothing yet (a study still tuning has no seeds): an empty table that keeps its columns, as one
        # unreplicated study's does, so every section reads it the same way
        shaped = [f for _, f in frames if len(f.columns)]
        return shaped[0].assign(replicate=pd.Series(dtype=int)) if shaped else pd.DataFrame()

    data = ReportData(
        spec,
        first.storage,
        pooled([(r, d.trials) for r, d in parts]),
        pooled([(r, d.seed_results) for r, d in parts]),
        pooled([(r, d.seed_metrics) for r, d in parts]),
        first.study_attrs,
        first.retrain_attrs,
        gate_use=_pooled_gate_use(parts),
        directions=first.directions,
        metric_names=first.metric_names,
    )
    data.searched = pooled([(r, d.searched) for r, d in parts])
    data.seed_curves = pooled([(r, d.seed_curves) for r, d in parts])
    for r, d in parts:
        data.versions.update(d.versions)
        data.model_origins.update(d.model_origins)
        data.importances.update({a: v for a, v in d.importances.items() if a not in data.importances})
        data.replicate_attrs.update({(r, a): attrs for a, attrs in d.retrain_attrs.items()})
        data.replicate_study_attrs.update({(r, a): attrs for a, attrs in d.study_attrs.items()})
    data.code_revisions = sorted({rev for _, d in parts for rev in d.code_revisions})
    data.kernels = sorted({k for _, d in parts for k in d.kernels})
    data.not_started = [n for _, d in parts for n in d.not_started]
    return data


def _pooled_gate_use(parts: list[tuple[int, ReportData]]) -> dict[str, pd.DataFrame]:
    """Each architecture's gate readings over its tuning replicates, labelled with the replicate: the replicates
    tuned different configurations (a mixture of 7 experts in one, a single expert in another), so their
    readings are shown side by side, never averaged together."""
    archs = dict.fromkeys(a for _, d in parts for a in d.gate_use)
    return {
        a: pd.concat(
            [d.gate_use[a].assign(replicate=r) for r, d in parts if a in d.gate_use], ignore_index=True
        )
        for a in archs
    }


def _collect_one(spec: StudySpec, storage_url: str | None = None, *, partial: bool = False) -> ReportData:
    url = normalise_url(storage_url)
    storage = open_storage(url, heartbeat=False, create=False)
    data = ReportData(spec, mask_url(url), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}, {})
    frames, searched, revisions, kernels = [], [], set(), set()
    for arch in (a.name for a in spec.architectures):
        study = _load(storage, spec.study_name(arch))
        if study is None or not study.get_trials(deepcopy=False):
            if partial:  # not started yet: named, not reported
                data.not_started.append((_replicate_of(spec), arch))
                continue
            missing = (
                f"no study {spec.study_name(arch)} in {mask_url(url)}"
                if study is None
                else f"study {spec.study_name(arch)} in {mask_url(url)} has no trials"
            )
            raise ConfigError(
                f"{missing}; run `hpo run {spec.source}` first, or `hpo report --partial` to report what exists so far"
            )
        data.directions = [d.name.lower() for d in study.directions]
        data.metric_names = study.metric_names or []
        frames.append(trials_frame(study, arch))
        retrain = _load(storage, retrain_study_name(spec.name, arch))
        retrain_attrs = dict(keys.plain(retrain.user_attrs)) if retrain is not None else {}
        searched.append(searched_row(arch, study, spec.budget, retrain_attrs.get(keys.TUNING_TRIAL)))
        for t in study.get_trials(deepcopy=False):
            data.versions.update(keys.plain(t.user_attrs).get(keys.VERSIONS) or {})
            if origin := keys.plain(t.user_attrs).get(keys.MODEL_ORIGIN):
                data.model_origins[arch] = origin
            if keys.plain(t.user_attrs).get(keys.CODE_REVISION):
                revisions.add(keys.plain(t.user_attrs)[keys.CODE_REVISION])
            if keys.plain(t.user_attrs).get(keys.KERNEL):
                kernels.add(keys.plain(t.user_attrs)[keys.KERNEL])
        data.study_attrs[arch] = dict(keys.plain(study.user_attrs))
        if (importance := _importance(study)) is not None:
            data.importances[arch] = importance
        if retrain is None:
            continue
        data.retrain_attrs[arch] = retrain_attrs
        if (use := _gate_use(retrain)) is not None:
            data.gate_use[arch] = use
    data.trials = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    data.seed_results = read_seed_results(url, spec.name)
    data.seed_metrics = read_seed_metrics(url, spec.name)
    data.seed_curves = read_seed_curves(url, spec.name)
    data.code_revisions = sorted(revisions)
    data.kernels = sorted(kernels)
    data.searched = pd.DataFrame(searched)
    return data
