"""Where a storage's training checkpoints go: beside a SQLite file, under the cache for a server, or where
``HPO_CHECKPOINTS`` says; none for an in-memory database or with ``HPO_CHECKPOINTS=off``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.storage.checkpoints import checkpoint_dir, checkpoint_path


def test_checkpoints_go_beside_a_sqlite_file_or_under_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HPO_CHECKPOINTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert checkpoint_dir(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db.checkpoints"
    assert checkpoint_dir("sqlite:///:memory:") is None and checkpoint_dir("sqlite://") is None
    pg = "postgresql://postgres@127.0.0.1:5432/test"
    assert checkpoint_dir(pg).parent == tmp_path / "cache" / "hpo" / "checkpoints"
    assert checkpoint_dir(pg) != checkpoint_dir(
        "postgresql://postgres@127.0.0.1:5432/other"
    )  # one per storage
    assert checkpoint_path(f"sqlite:///{tmp_path}/a.db", "s/mmoe/retrain", "ticket-3") == (
        tmp_path / "a.db.checkpoints" / "s_mmoe_retrain" / "ticket-3.pt"
    )
    monkeypatch.setenv("HPO_CHECKPOINTS", str(tmp_path / "elsewhere"))
    assert checkpoint_dir(pg).parent == tmp_path / "elsewhere"
    monkeypatch.setenv("HPO_CHECKPOINTS", "off")
    assert checkpoint_dir(pg) is None and checkpoint_path(pg, "s", "t") is None
