"""Locks that serialise claiming work across processes, enforced by the database or the operating system.

* PostgreSQL: a session-level advisory lock per study (``pg_advisory_lock``), held while a worker queues tickets
  or takes a WAITING trial, so two workers can never take the same one.
* A gRPC proxy: no lock; the ticket claims (:mod:`hpo.storage.claims`) alone keep the count exact.
* SQLite and journal files: an exclusive ``flock`` on ``<file>.hpo-lock`` beside the file. SQLite is a local database, so every
  process that uses it is on this machine and sees the same lock; Optuna's read-then-update of a WAITING trial is
  not atomic on SQLite, and this lock is what makes overlapping processes cooperate.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import sqlalchemy
from sqlalchemy.engine import make_url

from hpo.storage.engine import engine_for, journal_path, sqlite_path
from hpo.storage.filelock import file_lock, lock_path

__all__ = ["Lock", "claim_lock"]


class Lock:
    """A held claim lock; :meth:`release` lets it go early (once the claimed trial is ours)."""

    def __init__(self, release: contextlib.ExitStack) -> None:
        self._stack = release

    def release(self) -> None:
        self._stack.close()


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory(engine: sqlalchemy.Engine, name: str) -> Iterator[None]:
    conn = engine.connect()
    try:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _advisory_key(name)})
        yield
    finally:
        with contextlib.suppress(Exception):
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock_all()"))
            conn.commit()
        conn.close()


@contextlib.contextmanager
def claim_lock(url: str, name: str) -> Iterator[Lock]:
    """Hold the lock for study ``name`` of storage ``url`` while checking for and claiming work."""
    stack = contextlib.ExitStack()
    with stack:
        backend = make_url(url).get_backend_name()
        if backend in ("sqlite", "journal"):
            path = sqlite_path(url) or journal_path(url)
            if path is not None:
                stack.enter_context(file_lock(lock_path(path)))
        elif backend != "grpc":  # through a gRPC proxy nothing is shared but the proxy: ticket claims decide
            stack.enter_context(_advisory(engine_for(url), name))
        yield Lock(stack)
