"""hpo's own tables, beside Optuna's in the same database, and their creation.

* ``hpo_ticket_owners``: which trial owns each ticket of a study. Its primary key (study, ticket) is what makes
  "every ticket runs once" a database fact: a second trial of the same ticket cannot claim it while the owner is
  running or finished (see :mod:`hpo.storage.claims`).
* ``hpo_workers``: one row per worker process started, with an id the database assigns; a worker's sampler seed
  is derived from it, so no restart replays an earlier worker's proposals.
* ``hpo_seed_results`` / ``hpo_seed_metrics`` / ``hpo_seed_curves``: retraining results and each run's loss
  curve (see :mod:`hpo.storage.results`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = [
    "META",
    "SEED_CURVES",
    "SEED_METRICS",
    "SEED_RESULTS",
    "TICKET_OWNERS",
    "WORKERS",
    "ensure_tables",
    "has_table",
    "insert_ignore",
]

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
SEED_CURVES = sa.Table(
    "hpo_seed_curves",
    META,
    sa.Column("spec", sa.String(256), primary_key=True),
    sa.Column("architecture", sa.String(64), primary_key=True),
    sa.Column("seed", sa.Integer, primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("split", sa.String(16), primary_key=True),
    sa.Column("task", sa.String(128), primary_key=True),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("loss", sa.Float, nullable=True),
)
TICKET_OWNERS = sa.Table(
    "hpo_ticket_owners",
    META,
    sa.Column("study", sa.String(512), primary_key=True),
    sa.Column("ticket", sa.Integer, primary_key=True),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("claimed_at", sa.DateTime, nullable=False),
)
WORKERS = sa.Table(
    "hpo_workers",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("spec", sa.String(256), nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
)

_CREATED: set[str] = set()


def ensure_tables(engine: sa.Engine) -> None:
    """Create hpo's tables where missing; a concurrent creator winning the race is not an error."""
    key = engine.url.render_as_string(hide_password=False)
    if key in _CREATED:
        return
    for attempt in range(3):
        try:
            META.create_all(engine, checkfirst=True)
            break
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
            if "already exists" not in str(exc) and not isinstance(exc, sa.exc.IntegrityError):
                raise
            if attempt == 2:
                raise
    _CREATED.add(key)


def insert_ignore(engine: sa.Engine, table: sa.Table) -> Any:
    """An INSERT that leaves rows whose key already exists as they are (the retried-chunk and race case)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    return table.insert().prefix_with("IGNORE")


def has_table(engine: sa.Engine, table: sa.Table) -> bool:
    """Whether ``table`` exists (read paths never create tables)."""
    return sa.inspect(engine).has_table(table.name)
