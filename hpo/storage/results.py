"""Seed results of retraining, in the same database as the trials, queryable with SQL.

Two tables (:mod:`hpo.storage.tables`), created on the first write; a read never creates them:

* ``hpo_seed_results``: one row per (spec, architecture, seed) — the run's seeds, status, epochs, cost.
* ``hpo_seed_metrics``: one row per (spec, architecture, seed, split, task, metric) with its value.

Both have those keys as primary keys, and rows are inserted with "do nothing on conflict" in one transaction per
seed chunk, so a retried chunk can never double a result:

    SELECT architecture, avg(value) FROM hpo_seed_metrics
    WHERE spec = 'smoke' AND split = 'test' AND metric = 'auc' GROUP BY architecture;
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from hpo.storage.engine import engine_for
from hpo.storage.tables import SEED_METRICS, SEED_RESULTS, ensure_tables, has_table, insert_ignore

if TYPE_CHECKING:
    from hpo.training import TrainResult

__all__ = ["SeedRow", "read_seed_metrics", "read_seed_results", "write_seed_results"]

SeedRow = tuple[int, "TrainResult"]


def write_seed_results(
    url: str, spec: str, architecture: str, tuning_trial: int, rows: Sequence[SeedRow], replicas: int
) -> int:
    """Insert the seeds' results atomically; seeds already stored are left as they are. Return rows inserted."""
    engine = engine_for(url)
    ensure_tables(engine)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    results, metrics = [], []
    for seed, r in rows:
        results.append(
            {
                "spec": spec,
                "architecture": architecture,
                "seed": seed,
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
        for split, tasks in r.metrics.items():
            for task, ms in tasks.items():
                for metric, value in ms.items():
                    metrics.append(
                        {
                            "spec": spec,
                            "architecture": architecture,
                            "seed": seed,
                            "split": split,
                            "task": task,
                            "metric": metric,
                            "value": value,
                        }
                    )
    with engine.begin() as conn:
        inserted = conn.execute(insert_ignore(engine, SEED_RESULTS), results).rowcount
        if metrics:
            conn.execute(insert_ignore(engine, SEED_METRICS), metrics)
    return int(inserted or 0)


def _read(url: str, table: sa.Table, spec: str) -> pd.DataFrame:
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
