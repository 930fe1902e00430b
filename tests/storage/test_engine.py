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
from hpo.storage.locks import lock_path


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
