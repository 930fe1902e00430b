"""Ticket claims and worker ids, on SQL (the hpo_ticket_owners table) and without SQL (Optuna studies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.storage.claims import claim_ticket, is_bookkeeping, register_worker, worker_seed
from hpo.storage.engine import open_storage


@pytest.fixture(params=["sqlite", "journal"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return (
        f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else f"journal:///{tmp_path / 'c.log'}"
    )


def test_one_owner_per_ticket_until_it_fails(url: str) -> None:
    storage = open_storage(url)
    failed: set[int] = set()
    is_failed = failed.__contains__
    assert claim_ticket(url, storage, "s/a", 0, 5, is_failed) is None  # first claim owns
    assert claim_ticket(url, storage, "s/a", 0, 9, is_failed) == 5  # a second trial of the ticket is surplus
    assert claim_ticket(url, storage, "s/a", 1, 9, is_failed) is None  # another ticket is free
    assert claim_ticket(url, storage, "s/b", 0, 9, is_failed) is None  # another study is free
    failed.add(5)  # the owner died: its retry takes the ticket over, and only one contender wins
    assert claim_ticket(url, storage, "s/a", 0, 12, is_failed) is None
    assert claim_ticket(url, storage, "s/a", 0, 13, is_failed) == 12


def test_worker_ids_are_fresh_per_process_start_and_seed_distinct_samplers(url: str) -> None:
    storage = open_storage(url)
    ids = [register_worker(url, storage, "spec") for _ in range(4)]
    assert ids == sorted(set(ids)) and ids[0] == 1
    seeds = {worker_seed(0, i) for i in ids}
    assert len(seeds) == 4 and worker_seed(0, 1) == worker_seed(0, 1)  # distinct, and reproducible
    assert worker_seed(None, 3) is None


def test_bookkeeping_studies_are_recognised() -> None:
    assert is_bookkeeping("spec/mmoe/_claims") and is_bookkeeping("_hpo_workers")
    assert not is_bookkeeping("spec/mmoe") and not is_bookkeeping("spec/mmoe/retrain")
