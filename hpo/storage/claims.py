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

Storages without SQL (Optuna's gRPC proxy, a journal file) get the same guarantees from what Optuna's storage
API itself makes atomic, the creation of a trial with its attributes and the numbering of a study's trials in
order: a claim is a trial created in the study ``<study>/_claims`` carrying (ticket, trial); the owner of a ticket
is its earliest claim (lowest number) whose trial has not FAILED, which every contender computes alike once its
own claim exists. A worker's id is the number of a trial it creates in the study ``_hpo_workers``, plus one.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable

import numpy as np
import optuna
import sqlalchemy as sa

from hpo.storage import keys
from hpo.storage.engine import engine_for, is_rdb
from hpo.storage.tables import TICKET_OWNERS, WORKERS, ensure_tables, insert_ignore

__all__ = [
    "CLAIMS_SUFFIX",
    "WORKERS_STUDY",
    "claim_ticket",
    "is_bookkeeping",
    "register_worker",
    "worker_seed",
]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


CLAIMS_SUFFIX = "/_claims"
WORKERS_STUDY = "_hpo_workers"


def is_bookkeeping(study_name: str) -> bool:
    """Studies hpo keeps for itself on storages without SQL (not tuning or retraining studies)."""
    return study_name.endswith(CLAIMS_SUFFIX) or study_name == WORKERS_STUDY


def claim_ticket(
    url: str,
    storage: optuna.storages.BaseStorage,
    study: str,
    ticket: int,
    number: int,
    failed: Callable[[int], bool],
) -> int | None:
    """Make trial ``number`` the owner of ``ticket`` of ``study``. Return ``None`` when it is the owner now, or
    the number of the trial that owns the ticket (running or finished). ``failed(n)`` says whether trial ``n``
    ended FAILED, which frees its ticket."""
    if not is_rdb(url):
        return _claim_in_optuna(storage, study, ticket, number, failed)
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


def _claim_in_optuna(
    storage: optuna.storages.BaseStorage, study: str, ticket: int, number: int, failed: Callable[[int], bool]
) -> int | None:
    claims = optuna.create_study(storage=storage, study_name=study + CLAIMS_SUFFIX, load_if_exists=True)
    token = uuid.uuid4().hex
    claims.enqueue_trial(
        {}, user_attrs={keys.TICKET: ticket, keys.TRIAL: number, keys.TOKEN: token}, skip_if_exists=False
    )
    records = [c for c in claims.get_trials(deepcopy=False) if c.user_attrs.get(keys.TICKET) == ticket]
    mine = next(c for c in records if c.user_attrs.get(keys.TOKEN) == token)
    live = [
        c
        for c in records
        if c is mine or not (c.user_attrs.get(keys.SURPLUS) or failed(int(c.user_attrs[keys.TRIAL])))
    ]
    owner = min(live, key=lambda c: (c.number, c.user_attrs[keys.TRIAL]))
    if owner is mine:
        return None
    # a claim that lost stays lost, even after the owner fails: only a new claim (a retry) can take over
    study_id = storage.get_study_id_from_name(claims.study_name)
    storage.set_trial_user_attr(
        storage.get_trial_id_from_study_id_trial_number(study_id, mine.number), keys.SURPLUS, True
    )
    return int(owner.user_attrs[keys.TRIAL])


def register_worker(url: str, storage: optuna.storages.BaseStorage, spec: str) -> int:
    """Register this worker process; return the id the database assigned (1, 2, ... per database)."""
    if not is_rdb(url):
        workers = optuna.create_study(storage=storage, study_name=WORKERS_STUDY, load_if_exists=True)
        trial = workers.ask()
        for name, value in {"spec": spec, "host": socket.gethostname(), "pid": os.getpid()}.items():
            trial.set_user_attr(name, value)
        workers.tell(trial, 0.0)
        return trial.number + 1
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
