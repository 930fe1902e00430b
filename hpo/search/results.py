"""Seed results of retraining, in the same database as the trials, queryable with SQL.

Two tables, created on first use:

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
from typing import Any

import pandas as pd
import sqlalchemy as sa

from hpo.training import TrainResult

__all__ = ["SeedRow", "read_seed_metrics", "read_seed_results", "write_seed_results"]

META = sa.MetaData()
SEED_RESULTS = sa.Table(
    "hpo_seed_results",
    META,
    sa.Column("spec", sa.String(256), primary_key=True),
    sa.Column("architecture", sa.String(64), primary_key=True),
    sa.Column("seed", sa.Integer, primary_key=True),
    sa.Column("init_seed", sa.BigInteger, nullable=False),
    sa.Column("data_seed", sa.BigInteger, nullable=False),
    sa.Column("tuning_trial", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("epochs_run", sa.Integer, nullable=False),
    sa.Column("best_epoch", sa.Integer, nullable=False),
    sa.Column("wall_time", sa.Float, nullable=False),
    sa.Column("replicas_in_run", sa.Integer, nullable=False),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("parameter_count", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
SEED_METRICS = sa.Table(
    "hpo_seed_metrics",
    META,
    sa.Column("spec", sa.String(256), primary_key=True),
    sa.Column("architecture", sa.String(64), primary_key=True),
    sa.Column("seed", sa.Integer, primary_key=True),
    sa.Column("split", sa.String(16), primary_key=True),
    sa.Column("task", sa.String(128), primary_key=True),
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("value", sa.Float, nullable=True),
)

SeedRow = tuple[int, TrainResult]


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True)


def _insert_ignore(engine: sa.Engine, table: sa.Table) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    return table.insert().prefix_with("IGNORE")


def write_seed_results(
    url: str, spec: str, architecture: str, tuning_trial: int, rows: Sequence[SeedRow], replicas: int
) -> int:
    """Insert the seeds' results atomically; seeds already stored are left as they are. Return rows inserted."""
    engine = _engine(url)
    META.create_all(engine, checkfirst=True)
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
        inserted = conn.execute(_insert_ignore(engine, SEED_RESULTS), results).rowcount
        if metrics:
            conn.execute(_insert_ignore(engine, SEED_METRICS), metrics)
    engine.dispose()
    return int(inserted or 0)


def _read(url: str, table: sa.Table, spec: str) -> pd.DataFrame:
    engine = _engine(url)
    META.create_all(engine, checkfirst=True)
    with engine.connect() as conn:
        df = pd.read_sql(sa.select(table).where(table.c.spec == spec), conn)
    engine.dispose()
    return df


def read_seed_results(url: str, spec: str) -> pd.DataFrame:
    """One row per (architecture, seed) of ``spec``."""
    return _read(url, SEED_RESULTS, spec)


def read_seed_metrics(url: str, spec: str) -> pd.DataFrame:
    """One row per (architecture, seed, split, task, metric) of ``spec``."""
    return _read(url, SEED_METRICS, spec)
