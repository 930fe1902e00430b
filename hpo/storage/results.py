"""Seed results of retraining, in the same database as the trials, queryable with SQL.

Three tables (:mod:`hpo.storage.tables`), created on the first write; a read never creates them:

* ``hpo_seed_results``: one row per (spec, architecture, seed) — the run's seeds, status, epochs, cost.
* ``hpo_seed_metrics``: one row per (spec, architecture, seed, split, task, metric) with its value.
* ``hpo_seed_curves``: one row per (spec, architecture, seed, epoch, split, task): the task's loss on the training
  rows of that epoch (``train``) or on the validation split after it (``valid``), at the step count reached; the
  loss-against-steps figures of the MMoE paper are drawn from it.

All have those keys as primary keys, and rows are inserted with "do nothing on conflict" in one transaction per
seed chunk, so a retried chunk can never double a result:

    SELECT architecture, avg(value) FROM hpo_seed_metrics
    WHERE spec = 'smoke' AND split = 'test' AND metric = 'auc' GROUP BY architecture;

On storages without SQL (a gRPC proxy, a journal file) the same rows live as an attribute of the chunk's trial in
the retrain study (``hpo.seed_results``); only the trial that owns the chunk's ticket completes, so each seed is
stored once, and the readers below return the same tables either way (``hpo export`` and the report unchanged).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from hpo.schema import CURVE_SPLITS
from hpo.storage import keys
from hpo.storage.engine import engine_for
from hpo.storage.tables import (
    SEED_CURVES,
    SEED_METRICS,
    SEED_RESULTS,
    ensure_tables,
    has_table,
    insert_ignore,
)

if TYPE_CHECKING:
    from hpo.training import TrainResult

__all__ = [
    "SEED_RESULTS_ATTR",
    "SeedRow",
    "as_attribute",
    "curve_rows",
    "read_seed_curves",
    "read_seed_metrics",
    "read_seed_results",
    "seed_rows",
    "write_seed_results",
]

SeedRow = tuple[int, "TrainResult"]


def seed_rows(
    spec: str, architecture: str, tuning_trial: int, rows: Sequence[SeedRow], replicas: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of ``hpo_seed_results`` and ``hpo_seed_metrics`` for a chunk of seeds."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    results, metrics = [], []
    for seed, r in rows:
        key = {"spec": spec, "architecture": architecture, "seed": seed}
        results.append(
            {
                **key,
                "init_seed": r.init_seed,
                "data_seed": r.data_seed,
                "tuning_trial": tuning_trial,
                "status": r.status,
                "reason": r.reason,
                "epochs_run": r.epochs_run,
                "best_epoch": r.best_epoch,
                "wall_time": r.wall_time,
                "replicas_in_run": replicas,
                "device": r.device,
                "parameter_count": r.parameter_count,
                "created_at": now,
            }
        )
        metrics += [
            {**key, "split": split, "task": task, "metric": metric, "value": value}
            for split, tasks in r.metrics.items()
            for task, ms in tasks.items()
            for metric, value in ms.items()
        ]
    return results, metrics


def curve_rows(spec: str, architecture: str, rows: Sequence[SeedRow]) -> list[dict[str, Any]]:
    """The rows of ``hpo_seed_curves`` for a chunk of seeds: every epoch's loss per split and task."""
    out = []
    for seed, r in rows:
        for point in r.curve:
            at = {"spec": spec, "architecture": architecture, "seed": seed, "epoch": int(point["epoch"])}
            for split, prefix in CURVE_SPLITS.items():
                out += [
                    {**at, "split": split, "task": k[len(prefix) :], "step": int(point["step"]), "loss": v}
                    for k, v in point.items()
                    if k.startswith(prefix)
                ]
    return out


def write_seed_results(
    url: str,
    results: list[dict[str, Any]],
    metrics: list[dict[str, Any]],
    curves: Sequence[dict[str, Any]] = (),
) -> int:
    """Insert a chunk's rows atomically; seeds already stored are left as they are. Return rows inserted."""
    engine = engine_for(url)
    ensure_tables(engine)
    with engine.begin() as conn:
        inserted = conn.execute(insert_ignore(engine, SEED_RESULTS), results).rowcount
        if metrics:
            conn.execute(insert_ignore(engine, SEED_METRICS), metrics)
        if curves:
            conn.execute(insert_ignore(engine, SEED_CURVES), list(curves))
    return int(inserted or 0)


_CURVE_COLUMNS = ("seed", "epoch", "split", "task", "step", "loss")


def as_attribute(
    results: list[dict[str, Any]], metrics: list[dict[str, Any]], curves: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """A chunk's rows as a JSON trial attribute (storages without SQL: a gRPC proxy, a journal file); the curves
    column by column (a 200-run chunk holds tens of thousands of points, and keys repeated per point would triple
    the attribute)."""
    return {
        "results": [{**r, "created_at": r["created_at"].isoformat()} for r in results],
        "metrics": metrics,
        "curves": {c: [p[c] for p in curves] for c in _CURVE_COLUMNS},
    }


SEED_RESULTS_ATTR = keys.key(keys.SEED_RESULTS)


def _from_attributes(url: str, spec: str) -> dict[str, pd.DataFrame]:
    """Seed rows kept on the retrain studies' chunk trials, by table name; a seed stored twice (a retried chunk)
    counts once, from the first trial that stored it."""
    import optuna

    from hpo.storage.engine import open_storage

    storage = open_storage(url, heartbeat=False, create=False)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    metrics: dict[tuple[str, int], list[dict[str, Any]]] = {}
    curves: list[pd.DataFrame] = []
    for frozen in storage.get_all_studies():
        name = frozen.study_name
        if not (name.startswith(f"{spec}/") and name.endswith("/retrain")):
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            rows = t.user_attrs.get(SEED_RESULTS_ATTR)
            if not rows or keys.plain(t.user_attrs).get(keys.SURPLUS):
                continue
            fresh = set()
            for r in rows["results"]:
                key = (r["architecture"], int(r["seed"]))
                if key not in results:
                    results[key] = {**r, "created_at": dt.datetime.fromisoformat(r["created_at"])}
                    metrics[key] = [m for m in rows["metrics"] if m["seed"] == r["seed"]]
                    fresh.add(int(r["seed"]))
            chunk = pd.DataFrame(rows.get("curves") or {c: [] for c in _CURVE_COLUMNS})
            arch = rows["results"][0]["architecture"] if rows["results"] else ""
            curves.append(chunk[chunk.seed.isin(fresh)].assign(spec=spec, architecture=arch))
    return {
        SEED_RESULTS.name: pd.DataFrame(
            list(results.values()), columns=[c.name for c in SEED_RESULTS.columns]
        ),
        SEED_METRICS.name: pd.DataFrame(
            [m for ms in metrics.values() for m in ms], columns=[c.name for c in SEED_METRICS.columns]
        ),
        SEED_CURVES.name: pd.concat(
            [pd.DataFrame(columns=[c.name for c in SEED_CURVES.columns]), *curves], ignore_index=True
        )[[c.name for c in SEED_CURVES.columns]],
    }


def _read(url: str, table: sa.Table, spec: str) -> pd.DataFrame:
    from hpo.storage.engine import is_rdb

    if not is_rdb(url):
        return _from_attributes(url, spec)[table.name]
    engine = engine_for(url)
    if not has_table(engine, table):  # nothing retrained yet: an empty table, and nothing created on a read
        return pd.DataFrame(columns=[c.name for c in table.columns])
    with engine.connect() as conn:
        return pd.read_sql(sa.select(table).where(table.c.spec == spec), conn)


def read_seed_results(url: str, spec: str) -> pd.DataFrame:
    """One row per (architecture, seed) of ``spec``."""
    return _read(url, SEED_RESULTS, spec)


def read_seed_metrics(url: str, spec: str) -> pd.DataFrame:
    """One row per (architecture, seed, split, task, metric) of ``spec``."""
    return _read(url, SEED_METRICS, spec)


def read_seed_curves(url: str, spec: str) -> pd.DataFrame:
    """One row per (architecture, seed, epoch, split, task) of ``spec``: the runs' loss curves (none for runs
    retrained before hpo kept them)."""
    return _read(url, SEED_CURVES, spec)


def store_seed_results(
    url: str,
    trial: Any,
    results_rows: list[dict[str, Any]],
    metric_rows: list[dict[str, Any]],
    curve_rows: Sequence[dict[str, Any]] = (),
) -> None:
    """A retrain chunk's per-seed rows, where storage ``url`` keeps them: hpo's own tables on a SQL database (one
    row per seed, written once however often the chunk is retried), else on the chunk's trial as one attribute
    (``SEED_RESULTS_ATTR``) that :func:`read_seed_results` reads back."""
    from hpo.storage.engine import is_rdb

    if is_rdb(url):
        write_seed_results(url, results_rows, metric_rows, curve_rows)
    else:
        trial.set_user_attr(SEED_RESULTS_ATTR, as_attribute(results_rows, metric_rows, curve_rows))
