"""Where a storage's training checkpoints live (:mod:`hpo.training.checkpoint`).

Beside a SQLite file (``<file>.checkpoints/``), so that they go where the database goes; for a server database
(PostgreSQL, MySQL), a journal file or a proxy, under the user's cache (``~/.cache/hpo/checkpoints/<storage>``),
one folder per storage. A checkpoint is local to the machine that wrote it: a chunk retried on another machine
trains from its first epoch, as without checkpoints. ``HPO_CHECKPOINTS`` names another folder, or turns them off
(``off``). An in-memory database keeps none.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from hpo.storage.engine import sqlite_path

__all__ = ["checkpoint_dir", "checkpoint_path"]


def checkpoint_dir(url: str) -> Path | None:
    """The folder of ``url``'s checkpoints (see the module docstring), or None where there are none."""
    chosen = os.environ.get("HPO_CHECKPOINTS", "").strip()
    if chosen.lower() == "off":
        return None
    tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    if chosen:
        return Path(chosen).expanduser() / tag
    if url.startswith("sqlite"):
        database = sqlite_path(url)
        return None if database is None else database.with_name(database.name + ".checkpoints")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hpo" / "checkpoints" / tag


def checkpoint_path(url: str, study: str, name: str) -> Path | None:
    """The checkpoint file ``name`` of study ``study`` (a ticket's) under :func:`checkpoint_dir`."""
    folder = checkpoint_dir(url)
    if folder is None:
        return None
    return folder / re.sub(r"[^A-Za-z0-9._-]+", "_", study) / f"{name}.pt"
