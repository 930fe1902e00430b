"""One place that turns a storage URL into an Optuna storage (Optuna's own pattern, ``get_storage``).

* Default: ``sqlite:///hpo.db`` in the working directory, or ``$HPO_STORAGE``.
* ``postgresql://`` URLs use psycopg 3; connections are checked before use (``pool_pre_ping``) and time out fast.
* Heartbeats mark the trials of dead workers stale; ``RetryHeartbeatStaleTrialCallback`` re-queues each once.
* Credentials come only from the URL or the environment; :func:`mask_url` is what may be printed or stored.
"""

from __future__ import annotations

import os
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hpo.errors import StorageError

__all__ = ["DEFAULT_STORAGE", "HEARTBEAT_SECONDS", "is_sqlite", "mask_url", "normalise_url", "open_storage"]

DEFAULT_STORAGE = "sqlite:///hpo.db"
HEARTBEAT_SECONDS = int(os.environ.get("HPO_HEARTBEAT_SECONDS", "10"))
MAX_RETRY = 1


def normalise_url(url: str | None) -> str:
    url = url or os.environ.get("HPO_STORAGE") or DEFAULT_STORAGE
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"storage URL {url!r} is not a URL (e.g. sqlite:///hpo.db, postgresql://user@host:5432/db)"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``: safe for logs, errors, reports and stored attributes."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable storage URL>"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def open_storage(url: str | None = None, *, heartbeat: bool = True) -> optuna.storages.RDBStorage:
    """An RDB storage for ``url``, reachable or refused with a clear one-line error within seconds."""
    url = normalise_url(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if not is_sqlite(url):
        engine_kwargs["connect_args"] = {"connect_timeout": 5}
    else:
        engine_kwargs["connect_args"] = {"timeout": 60}
    kw: dict[str, Any] = {}
    if heartbeat:
        kw = {
            "heartbeat_interval": HEARTBEAT_SECONDS,
            "grace_period": 3 * HEARTBEAT_SECONDS,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY
            ),
        }
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kw)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise StorageError(f"cannot open storage {mask_url(url)}: {reason}") from None
    except (ImportError, sqlalchemy.exc.NoSuchModuleError, ValueError) as exc:
        raise StorageError(f"cannot open storage {mask_url(url)}: {exc}") from None
