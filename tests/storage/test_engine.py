"""Storage URLs: parsed (not pattern-matched), masked whole, refused in one line, never creating a file on a read."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.errors import StorageError, mask_secrets
from hpo.storage.engine import (
    is_rdb,
    journal_path,
    mask_url,
    normalise_url,
    open_storage,
    parse_url,
    sqlite_path,
)
from hpo.storage.filelock import lock_path


@pytest.mark.parametrize(
    ("url", "password", "host"),
    [
        ("postgresql://u:pw@h:5432/db", "pw", "h"),
        ("postgresql://u:p@ss@h:5432/db", "p@ss", "h"),  # a raw "@" belongs to the password
        ("postgresql://u:a:b/c@h/db", "a:b/c", "h"),
        ("postgresql://u:p%40ss@h/db", "p@ss", "h"),  # the percent-encoded form means the same
        ("postgresql://u@h/db", None, "h"),
    ],
)
def test_passwords_are_parsed_whole(url: str, password: str | None, host: str) -> None:
    parsed = parse_url(url)
    assert parsed.password == password and parsed.host == host
    assert "***" in mask_url(url) or password is None
    if password:
        assert password not in mask_url(url) and password not in mask_secrets(f"error at {url} here")
    # the URL hpo connects with round-trips the password
    assert parse_url(normalise_url(url)).password == password


def test_ports_out_of_range_and_non_urls_are_one_line() -> None:
    with pytest.raises(StorageError, match="port 70000 is out of range"):
        normalise_url("postgresql://u@h:70000/db")
    with pytest.raises(StorageError, match="is not a URL"):
        normalise_url("hpo.db")


def test_kinds_and_paths() -> None:
    assert is_rdb("sqlite:///x.db") and is_rdb("postgresql+psycopg://u@h/db")
    assert not is_rdb("grpc://127.0.0.1:13000") and not is_rdb("journal:///tmp/x.log")
    assert sqlite_path("sqlite:////tmp/a.db") == Path("/tmp/a.db")
    assert sqlite_path("sqlite:///file:/tmp/a.db?mode=ro&uri=true") == Path("/tmp/a.db")
    assert sqlite_path("sqlite://") is None
    assert journal_path("journal:////tmp/x.log") == Path("/tmp/x.log")
    assert lock_path(Path("/tmp/x.log")).name == "x.log.hpo-lock"  # not Optuna's journal lock name


def test_reading_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'none.db'}", f"journal:///{tmp_path / 'none.log'}"):
        with pytest.raises(StorageError, match="no database at"):
            open_storage(url, create=False)
    assert list(tmp_path.iterdir()) == []


def test_a_reader_waits_for_a_schema_being_created(tmp_path: Path) -> None:
    """A reader that finds the file mid-way through its schema waits for the writer instead of racing its
    CREATE TABLE (seen in CI: "table trial_system_attributes already exists" from `open_storage(create=False)`)."""
    import sqlite3
    import threading

    import optuna

    from hpo.storage.filelock import file_lock

    db = tmp_path / "hpo.db"
    url = f"sqlite:///{db}"
    opened: list[object] = []
    with file_lock(lock_path(db)):  # the writer holds the schema lock, as `open_storage(create=True)` does
        sqlite3.connect(db).close()  # the file exists, with no tables yet
        reader = threading.Thread(
            target=lambda: opened.append(open_storage(url, heartbeat=False, create=False))
        )
        reader.start()
        reader.join(timeout=1.0)
        assert reader.is_alive() and not opened, "the reader opened a database whose schema was being created"
        storage = optuna.storages.RDBStorage(url)  # the writer creates the schema, then lets the reader in
        storage.create_new_study(directions=[optuna.study.StudyDirection.MAXIMIZE], study_name="s")
    reader.join(timeout=60)
    assert len(opened) == 1
    (study,) = opened[0].get_all_studies()  # type: ignore[attr-defined]
    assert study.study_name == "s"


def test_a_reader_in_a_folder_it_cannot_write_takes_no_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared, read-only results folder: the report still opens the database, without a lock file it cannot
    create (os.access is patched: this suite may run as root, whom no permission bit stops)."""
    import optuna

    from hpo.storage import engine

    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    optuna.storages.RDBStorage(url).create_new_study(directions=[optuna.study.StudyDirection.MAXIMIZE])
    monkeypatch.setattr(engine.os, "access", lambda path, mode: mode != engine.os.W_OK)
    assert len(open_storage(url, heartbeat=False, create=False).get_all_studies()) == 1
    assert not lock_path(tmp_path / "hpo.db").exists()
