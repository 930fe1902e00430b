"""Ticket ownership and worker registration: the database facts behind "exactly N trials, N configurations".

A ticket (one of the N trials an architecture is promised) may be queued twice by overlapping processes, or
re-queued by a heartbeat retry while an interrupted worker re-queues it too; what must never happen is that two
trials of one ticket both *run*. So a trial claims its ticket before training, in ``hpo_ticket_owners`` whose
primary key is (study, ticket): the first claim inserts the row; a later trial of the same ticket takes the row
over only from an owner that FAILED (a compare-and-swap on the owner's number, which the database serialises),
and otherwise is surplus. Any number of processes, on SQLite or PostgreSQL, end with one owner per ticket.

Every worker process registers in ``hpo_workers`` and gets an id the database assigns; its sampler seed is derived
from the study's seed and that id, so no restart and no default ``--worker-index`` replays earlier proposals, and
the seed is recorded on every trial it runs.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa

from hpo.storage.engine import engine_for
from hpo.storage.tables import TICKET_OWNERS, WORKERS, ensure_tables, insert_ignore

__all__ = ["claim_ticket", "register_worker", "worker_seed"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def claim_ticket(url: str, study: str, ticket: int, number: int, failed: Callable[[int], bool]) -> int | None:
    """Make trial ``number`` the owner of ``ticket`` of ``study``. Return ``None`` when it is the owner now, or
    the number of the trial that owns the ticket (running or finished). ``failed(n)`` says whether trial ``n``
    ended FAILED, which frees its ticket."""
    engine = engine_for(url)
    ensure_tables(engine)
    key = (TICKET_OWNERS.c.study == study) & (TICKET_OWNERS.c.ticket == ticket)
    with engine.begin() as conn:
        row = {"study": study, "ticket": ticket, "trial_number": number, "claimed_at": _now()}
        if conn.execute(insert_ignore(engine, TICKET_OWNERS), [row]).rowcount == 1:
            return None
        owner = int(conn.execute(sa.select(TICKET_OWNERS.c.trial_number).where(key)).scalar_one())
    if owner == number:
        return None
    if not failed(owner):
        return owner
    with engine.begin() as conn:  # compare-and-swap: only one of several contenders replaces the failed owner
        swapped = conn.execute(
            sa.update(TICKET_OWNERS)
            .where(key & (TICKET_OWNERS.c.trial_number == owner))
            .values(trial_number=number, claimed_at=_now())
        ).rowcount
        if swapped == 1:
            return None
        return int(conn.execute(sa.select(TICKET_OWNERS.c.trial_number).where(key)).scalar_one())


def register_worker(url: str, spec: str) -> int:
    """Register this worker process; return the id the database assigned (1, 2, ... per database)."""
    engine = engine_for(url)
    ensure_tables(engine)
    with engine.begin() as conn:
        result = conn.execute(
            WORKERS.insert().values(
                spec=spec, host=socket.gethostname()[:256], pid=os.getpid(), started_at=_now()
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def worker_seed(study_seed: int | None, worker_id: int) -> int | None:
    """The sampler seed of worker ``worker_id``: a pure function of the study's sampler seed and the id (``None``
    keeps an unseeded study unseeded)."""
    if study_seed is None:
        return None
    return int(np.random.SeedSequence([study_seed, worker_id]).generate_state(1)[0])
