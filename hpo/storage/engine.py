"""One place that turns a storage URL into an Optuna storage (Optuna's own pattern, ``get_storage``).

* Default: ``sqlite:///hpo.db`` in the working directory, or ``$HPO_STORAGE``.
* ``postgresql://`` URLs use psycopg 3; connections are checked before use (``pool_pre_ping``) and time out fast.
* Heartbeats mark the trials of dead workers stale; ``RetryHeartbeatStaleTrialCallback`` re-queues each once.
* Credentials come only from the URL or the environment; :func:`mask_url` is what may be printed or stored. URLs
  are *parsed* (the password is everything between the first ``:`` of the user part and the last ``@`` before the
  host), so a password holding ``@``, ``:`` or ``/`` is never half-printed.
* Read-only commands open with ``create=False``: a missing SQLite file is a one-line error, never a new empty file.
* Two processes creating the same new database at once do not collide: schema creation happens under a lock
  (a file lock beside a SQLite file) and is retried once after a lost race on a server.
* Beyond one database server: ``grpc://HOST:PORT`` talks to Optuna's gRPC storage proxy (``hpo proxy`` starts
  one), and ``journal:///PATH`` is Optuna's append-only journal file. Neither offers SQL, so on them hpo keeps its
  claims, worker ids and seed results in Optuna studies and trial attributes (see :mod:`hpo.storage.claims`).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import optuna
import sqlalchemy
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpo.errors import StorageError, mask_secrets
from hpo.storage.filelock import file_lock, lock_path

__all__ = [
    "DEFAULT_STORAGE",
    "HEARTBEAT_SECONDS",
    "describe_storage_fault",
    "engine_for",
    "is_rdb",
    "is_sqlite",
    "journal_path",
    "mask_url",
    "normalise_url",
    "open_storage",
    "parse_url",
    "sqlite_path",
]

DEFAULT_STORAGE = "sqlite:///hpo.db"
HEARTBEAT_SECONDS = int(os.environ.get("HPO_HEARTBEAT_SECONDS", "10"))
MAX_RETRY = 1
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.S)


def parse_url(url: str) -> URL:
    """Parse a storage URL; a raw ``@`` or ``:`` in the password is taken as part of the password.

    SQLAlchemy splits the user part at the *first* ``@``; a person who types ``postgres:p@ss@host`` means the
    password ``p@ss``, so the user part here ends at the *last* ``@`` before the path."""
    m = _SCHEME.match(url)
    if m is None:
        raise StorageError(
            f"storage URL {mask_secrets(url)!r} is not a URL (e.g. sqlite:///hpo.db, postgresql://user@host:5432/db)"
        )
    scheme, rest = m.groups()
    if scheme.startswith("sqlite"):
        return make_url(url)
    head = rest.split("?", 1)[0]
    at = head.rfind("@")
    user = password = None
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        name, sep, secret = userinfo.partition(":")
        user, password = unquote(name), (unquote(secret) if sep else None)
    try:
        parsed = make_url(f"{scheme}://{rest}")
    except (ArgumentError, ValueError) as exc:
        raise StorageError(f"storage URL {mask_url(url)!r} cannot be parsed: {exc}") from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise StorageError(f"storage URL {mask_url(url)!r}: port {parsed.port} is out of range (1-65535)")
    return parsed.set(username=user, password=password)


def normalise_url(url: str | None) -> str:
    """The URL to connect with: ``$HPO_STORAGE`` or the default when none is given, psycopg 3 for PostgreSQL."""
    url = url or os.environ.get("HPO_STORAGE") or DEFAULT_STORAGE
    parsed = parse_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``: safe for logs, errors, reports and stored attributes."""
    if _SCHEME.match(url) is None:
        return "<unparseable storage URL>"
    return mask_secrets(url)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_rdb(url: str) -> bool:
    """A SQL database (SQLite, PostgreSQL, ...), as opposed to a gRPC proxy or a journal file."""
    return make_url(url).get_backend_name() not in ("grpc", "journal")


def journal_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "journal" or not parsed.database:
        return None
    return Path(parsed.database)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (``None`` for in-memory databases and other backends)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    database = parsed.database
    if database.startswith("file:"):  # a SQLite URI (`?uri=true`), e.g. file:/path/hpo.db with mode=ro
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


_ENGINES: dict[str, sqlalchemy.Engine] = {}


def engine_for(url: str) -> sqlalchemy.Engine:
    """One SQLAlchemy engine per URL and process, for hpo's own tables (claims, workers, seed results)."""
    if url not in _ENGINES:
        connect: dict[str, Any] = {"timeout": 60} if is_sqlite(url) else {"connect_timeout": 5}
        _ENGINES[url] = sqlalchemy.create_engine(url, pool_pre_ping=True, connect_args=connect)
    return _ENGINES[url]


def _check_sqlite_file(url: str, *, create: bool) -> None:
    path = sqlite_path(url) or journal_path(url)
    if path is None:
        return
    if not path.exists():
        if not create:
            raise StorageError(
                f"no database at {path} ({mask_url(url)}); run `hpo run STUDY` first, or pass --storage"
            )
        if not path.parent.is_dir():
            raise StorageError(f"cannot create {path}: folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise StorageError(f"cannot create {path}: folder {path.parent} is not writable")
    elif create and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise StorageError(
            f"database {path} is read-only (the file or its folder is not writable); "
            "fix its permissions or pass another --storage"
        )


def _open_other(url: str) -> optuna.storages.BaseStorage:
    parsed = make_url(url)
    if parsed.get_backend_name() == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = journal_path(url)
        if path is None:
            raise StorageError(f"storage URL {mask_url(url)!r} names no file (e.g. journal:///path/hpo.log)")
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if not parsed.host or parsed.port is None:
        raise StorageError(
            f"storage URL {mask_url(url)!r} needs a host and a port (e.g. grpc://127.0.0.1:13000)"
        )
    try:
        proxy = optuna.storages.GrpcStorageProxy(host=parsed.host, port=parsed.port)
        proxy.wait_server_ready(timeout=5)
    except ImportError as exc:
        raise StorageError(f"cannot open storage {mask_url(url)}: {exc}") from None
    except Exception as exc:  # grpc's own FutureTimeoutError and connection errors
        raise StorageError(
            f"cannot open storage {mask_url(url)}: no gRPC proxy answers there ({type(exc).__name__}); "
            "start one with `hpo proxy --storage DATABASE_URL --port PORT`"
        ) from None
    return proxy


def open_storage(
    url: str | None = None, *, heartbeat: bool = True, create: bool = True
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``, reachable or refused with a clear one-line error within seconds.

    ``create=False`` (reports, status, export) refuses a SQLite or journal file that does not exist instead of
    creating it. Heartbeats are Optuna's on SQL databases; on a gRPC proxy or a journal, hpo's worker loop keeps
    its own (:mod:`hpo.storage.heartbeat`)."""
    url = normalise_url(url)
    _check_sqlite_file(url, create=create)
    if not is_rdb(url):
        return _open_other(url)
    connect: dict[str, Any] = {"timeout": 60} if is_sqlite(url) else {"connect_timeout": 5}
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True, "connect_args": connect}
    kw: dict[str, Any] = {}
    if heartbeat:
        kw = {
            "heartbeat_interval": HEARTBEAT_SECONDS,
            "grace_period": 3 * HEARTBEAT_SECONDS,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY
            ),
        }
    path = sqlite_path(url)
    # Every opener of a SQLite file takes the schema lock, readers (create=False) included: a file that exists can
    # still be mid-way through its schema, and a reader that opened it then raced the writer's CREATE TABLE. A
    # reader in a folder it cannot write to (a shared, read-only results folder) skips the lock it cannot create.
    lock = path is not None and (create or os.access(path.parent, os.W_OK))
    for attempt in range(3):
        try:
            if lock and path is not None:  # one process creates the schema, the others wait for it
                with file_lock(lock_path(path)):
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kw)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kw)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 2:  # a server-side schema race lost three times is not a race
                raise
            time.sleep(0.5 + attempt)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            if "already exists" in reason and attempt < 2:  # a schema race with an opener that takes no lock
                time.sleep(0.5 + attempt)
                continue
            raise StorageError(f"cannot open storage {mask_url(url)}: {reason}") from None
        except (ImportError, sqlalchemy.exc.NoSuchModuleError, ValueError) as exc:
            raise StorageError(f"cannot open storage {mask_url(url)}: {exc}") from None
    raise AssertionError("unreachable")


_HINTS = {
    "readonly": "the database file or its folder is not writable; fix its permissions",
    "read-only": "the database is read-only; fix its permissions",
    "disk is full": "the disk is full; free space, then run the same command again to resume",
    "no space left": "the disk is full; free space, then run the same command again to resume",
    "could not extend": "the server's disk is full; free space, then run the same command again to resume",
    "disk i/o error": "the disk is full or failing; free space, then run the same command again to resume",
}


def describe_storage_fault(exc: BaseException) -> str | None:
    """One line for a database failure in the middle of a command (a read-only file, a full disk, a server that
    went away), found in the exception's chain; ``None`` when the exception is not a storage failure.

    Optuna re-raises such failures as ``StorageInternalError`` with a message about "exceeding max length", which
    is misleading; the database's own first line, with a hint, is what a person needs."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.orig is not None:
            reason = (
                str(seen.orig).strip().splitlines()[0] if str(seen.orig).strip() else type(seen.orig).__name__
            )
            hint = next(
                (h for k, h in _HINTS.items() if k in reason.lower()), "run the same command again to resume"
            )
            return f"storage failed: {reason} ({hint})"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        return f"storage failed: {exc}"
    return None
