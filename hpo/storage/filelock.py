"""A lock file beside a database file: the operating system's exclusive ``flock``, released when the holder exits
or dies. The lowest piece of the storage layer: the engine takes it while creating a SQLite schema, the proxy while
starting, and :mod:`hpo.storage.locks` while claiming work on a SQLite or journal file."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_lock", "lock_path"]


def lock_path(database: Path) -> Path:
    """``<file>.hpo-lock``: not ``<file>.lock``, which Optuna's journal backend uses for a lock of its own."""
    return database.with_name(database.name + ".hpo-lock")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if absent), released on exit or when the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
