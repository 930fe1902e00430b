"""The worker loop: run the queued tuning trials of every architecture of a spec until none is left.

One Optuna study per (study spec, architecture), named ``SPEC/ARCH``. The requested trials are *tickets*: ``hpo run``
enqueues one WAITING trial per missing ticket (user attribute ``ticket``), and workers run WAITING trials until none
is left. So the number of trials is exact however many workers share the study: a worker that dies leaves its
trial RUNNING, the heartbeat marks it stale, and Optuna's ``RetryHeartbeatStaleTrialCallback`` re-queues it (same
parameters, same ticket) once. Running ``hpo run`` again resumes: tickets that ended FAILED are queued again.

What makes the count exact under any number of overlapping processes is enforced, not hoped for:

* queuing and taking WAITING trials happen under a lock per study (a PostgreSQL advisory lock; a file lock beside a
  SQLite file, see :mod:`hpo.storage.locks`), so two processes neither queue one ticket twice nor take one trial;
* before training, a trial claims its ticket in ``hpo_ticket_owners`` (primary key (study, ticket)); a second
  trial of a ticket whose owner is running or finished is failed at once as surplus (:mod:`hpo.storage.claims`);
* every worker process gets a database-assigned id and a sampler seed derived from it, so no restart replays
  earlier proposals; a proposal equal to a finished trial's parameters is resampled (twice at most, then the
  earlier result is reused), and the trial says which.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import optuna

from hpo.config.study import StudySpec
from hpo.data._tabular import TabularDataset
from hpo.errors import Interrupted
from hpo.models import kernel_provenance
from hpo.search import interrupts, settle
from hpo.search.objective import (
    MAX_RESAMPLES,
    DuplicateConfiguration,
    Objective,
)
from hpo.search.studies import create_studies, load_study_dataset, require_studies
from hpo.search.tickets import LIVE, ensure_tickets
from hpo.storage import keys
from hpo.storage.claims import claim_ticket, register_worker
from hpo.storage.engine import HEARTBEAT_SECONDS, normalise_url, open_storage
from hpo.storage.heartbeat import fail_dead_workers, trial_heartbeat
from hpo.storage.locks import claim_lock
from hpo.training import resolve_device, threads

log = logging.getLogger(__name__)

__all__ = ["WorkerStats", "drain", "prepare_worker", "run_worker"]


@dataclass
class WorkerStats:
    trials_run: int = 0
    by_arch: dict[str, int] = field(default_factory=dict)


class _Surplus(Exception):
    """A trial that holds no ticket, or whose ticket another trial owns: failed at once, never counted."""


class _TakenTwice(Exception):
    """This worker and another took the same WAITING trial at once (a storage whose pop is not atomic, such as a
    gRPC proxy over SQLite that does not serialise it); the other worker runs it, this one steps aside."""


_QUIET = (_Surplus, _TakenTwice, DuplicateConfiguration, KeyboardInterrupt)


class _QuietExpectedFailures(logging.Filter):
    """Drop Optuna's traceback-carrying "Trial N failed" warnings for the failures hpo causes on purpose
    (surplus tickets, resampled duplicates, an interrupt that re-queues its trial): each is recorded on the
    trial and, for an interrupt, said in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.drop_next = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, _QUIET):
            self.drop_next = True  # and its companion line, "Trial N failed with value None."
            return False
        if self.drop_next and "failed with value" in record.getMessage():
            self.drop_next = False
            return False
        return True


def _ticket_free(study: optuna.Study) -> Callable[[int], bool]:
    def failed(number: int) -> bool:
        trials = study.get_trials(deepcopy=False)
        return number < len(trials) and trials[number].state == optuna.trial.TrialState.FAIL

    return failed


def _requeue_duplicate(
    url: str,
    study: optuna.Study,
    number: int,
    finite_points: Callable[[], list[dict[str, Any]] | None] | None = None,
    done: optuna.trial.FrozenTrial | None = None,
) -> None:
    """Queue the ticket of trial ``number`` (``done``, when the caller has read it already) again if it failed as a duplicate proposal (and no live trial holds
    the ticket): the next proposal is drawn afresh, with a count of resamples on the trial. On the last resample
    of a space with few points (``finite_points``), the ticket carries an untried point instead, so that a
    result is reused only once every point has been tried or is running."""
    trial = study.get_trials(deepcopy=False)[number] if done is None else done
    if trial.state != optuna.trial.TrialState.FAIL or keys.DUPLICATE_OF not in keys.plain(trial.user_attrs):
        return
    ticket = keys.plain(trial.user_attrs).get(keys.TICKET)
    resamples = int(keys.plain(trial.user_attrs).get(keys.RESAMPLES, 0)) + 1
    with claim_lock(url, study.study_name):
        trials = study.get_trials(deepcopy=False)
        live = {keys.plain(t.user_attrs).get(keys.TICKET) for t in trials if t.state in LIVE}
        if ticket is None or ticket in live:
            return
        fixed: dict[str, Any] = {}
        points = finite_points() if finite_points is not None and resamples >= MAX_RESAMPLES else None
        if points:
            taken = [_planned_params(t) for t in trials if t.state in LIVE]
            fixed = next((p for p in points if p not in taken), {})
        attrs = {
            keys.TICKET: ticket,
            keys.RESAMPLES: resamples,
            **({keys.UNTRIED_POINT: True} if fixed else {}),
        }
        study.enqueue_trial(fixed, user_attrs=keys.tag(attrs), skip_if_exists=False)


def _planned_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's parameters: those it ran with, or for a WAITING trial the ones enqueued with it."""
    if trial.params or trial.state != optuna.trial.TrialState.WAITING:
        return dict(trial.params)
    return dict(trial.system_attrs.get(keys.OPTUNA_FIXED_PARAMS, {}))


class _Drain:
    """One worker's loop over the WAITING trials of several studies (see :func:`drain`)."""

    def __init__(self, url: str, storage: optuna.storages.BaseStorage, progress: Any) -> None:
        self.url, self.storage, self.progress = url, storage, progress
        self.stats = WorkerStats()
        self.stale_checked: dict[str, float] = {}  # study -> when this worker last looked for dead workers

    def objective(
        self, study: optuna.Study, objective: Any, key: str, lock: Any, current: dict[str, int]
    ) -> Any:
        proposes = isinstance(objective, Objective)

        def func(trial: optuna.Trial) -> Any:
            current["number"] = trial.number
            if proposes:  # the lock is let go once the configuration is proposed and checked against others
                objective.after_proposal = lock.release
                objective.fail_stale = self.fail_stale
            else:  # the WAITING trial is ours now: let other workers claim theirs
                lock.release()
            ticket = keys.plain(trial.user_attrs).get(keys.TICKET)
            if ticket is None:
                trial.set_user_attr(keys.key(keys.SURPLUS), True)
                raise _Surplus("no ticket left: this trial would exceed the requested number")
            owner = claim_ticket(
                self.url, self.storage, study.study_name, int(ticket), trial.number, _ticket_free(study)
            )
            if owner == trial.number:
                lock.release()
                current["taken_twice"] = 1
                _wait_while_running(self.url, study, trial.number)
                raise _TakenTwice(
                    f"trial {trial.number} ran in another worker that took it at the same moment"
                )
            if owner is not None:
                trial.set_user_attr(keys.key(keys.SURPLUS), True)
                trial.set_user_attr(keys.key(keys.TICKET_OWNER), owner)
                raise _Surplus(f"ticket {ticket} is owned by trial {owner}")
            if self.progress is not None:
                self.progress.trial_started(key, trial)
            with trial_heartbeat(self.url, trial):
                return objective(trial)

        return func

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail (and re-queue) the trials of workers that died (:func:`fail_dead_workers`)."""
        fail_dead_workers(self.url, study)

    def look_for_dead_workers(self, study: optuna.Study) -> None:
        """:meth:`fail_stale` before a claim, at most every half heartbeat interval per study: a heartbeat goes
        stale only after ``3 x HEARTBEAT_SECONDS``, and a study of cheap trials would otherwise read every trial
        twice more per trial. A worker that finds nothing waiting looks at its next poll (it may be waiting on a
        dead worker's trial)."""
        now = time.monotonic()
        if now - self.stale_checked.get(study.study_name, -math.inf) >= HEARTBEAT_SECONDS / 2:
            self.fail_stale(study)
            self.stale_checked[study.study_name] = now

    def extended(self, study: optuna.Study, objective: Any) -> bool:
        """Whether the convergence rule (``trials: {until: settled}``) queued more trials of a finished study."""
        if not isinstance(objective, Objective) or objective.spec.budget_rule is None:
            return False
        return settle.settle(
            self.url,
            study,
            objective.spec,
            higher_is_better=objective.higher_is_better,
            spaces=[objective.space, objective.opt_space],
            probe=objective.probe_seeds,
            chance=objective.chance,
            fits=objective.fits_budget,
            enqueue=ensure_tickets,
        )

    def step(self, key: str, study: optuna.Study, objective: Any) -> bool | None:
        """Run one WAITING trial of ``study``; ``True`` if one ran, ``False`` if none is waiting but some are
        running elsewhere, ``None`` when the study is finished."""
        current: dict[str, int] = {}
        with claim_lock(self.url, study.study_name) as lock:
            self.look_for_dead_workers(study)
            trials = study.get_trials(deepcopy=False)
            states = {t.state for t in trials}
            if optuna.trial.TrialState.WAITING not in states:
                self.stale_checked.pop(study.study_name, None)
                return False if optuna.trial.TrialState.RUNNING in states else None
            running_before = {t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING}
            finished: list[optuna.trial.FrozenTrial] = []
            try:
                study.optimize(
                    self.objective(study, objective, key, lock, current),
                    n_trials=1,
                    catch=(_Surplus, DuplicateConfiguration),
                    callbacks=[
                        lambda _, frozen: finished.append(frozen)
                    ],  # the trial as told, without a read
                )
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as exc:
                if current.get("taken_twice"):  # Optuna could not fail a trial another worker finished: right
                    log.info(
                        "%s trial %s ran in the worker that took it first",
                        study.study_name,
                        current["number"],
                    )
                    return True
                if not _failed_elsewhere(study, current.get("number")):
                    raise
                log.warning(
                    "trial %s of %s was failed by another worker while it ran (its heartbeat looked stale); "
                    "its ticket is retried: %s",
                    current.get("number"),
                    study.study_name,
                    exc,
                )
                _requeue_dropped(self.url, study, current["number"])
            except BaseException as exc:
                # Optuna's clean-up can turn an interrupt into another error (an UnboundLocalError from the
                # `finally` of its tell when the signal lands there): a pending stop request says what it was
                if not (isinstance(exc, KeyboardInterrupt) or interrupts.requested()):
                    raise
                _interrupted(study, current.get("number", _claimed_since(study, running_before)))
        self._finished(key, study, objective, current, finished)
        return True

    def _finished(
        self,
        key: str,
        study: optuna.Study,
        objective: Any,
        current: dict[str, int],
        finished: list[optuna.trial.FrozenTrial],
    ) -> None:
        """After a step: a duplicate's ticket queued again, the outcome logged, the counts and the display."""
        if "number" in current:
            told = [t for t in finished if t.number == current["number"]]  # as Optuna told it: no read needed
            done = told[0] if told else study.get_trials(deepcopy=False)[current["number"]]
            _requeue_duplicate(
                self.url, study, done.number, getattr(objective, "finite_points", None), done=done
            )
            log.info(
                "%s trial %d %s %s", study.study_name, done.number, done.state.name.lower(), done.values or ""
            )
        self.stats.trials_run += 1
        self.stats.by_arch[key] = self.stats.by_arch.get(key, 0) + 1
        if self.progress is not None:
            self.progress.trial_finished(key, study)


IDLE_POLL = (
    0.2,
    5.0,
)  # seconds between polls of a worker with nothing to run while others still run: first, most


def drain(
    url: str,
    storage: optuna.storages.BaseStorage,
    queues: Mapping[str, tuple[optuna.Study, Callable[[optuna.Trial], Any]]],
    *,
    deadline: float | None = None,
    progress: Any = None,
    heartbeat: float = 10.0,
    refresh: Callable[[], Mapping[str, tuple[optuna.Study, Callable[[optuna.Trial], Any]]]] | None = None,
) -> WorkerStats:
    """Run the WAITING trials of every study in ``queues``, round-robin, until none is left or the deadline passes.

    While other workers' trials are still RUNNING, keep polling, so that a trial whose worker died is retried
    (its heartbeat goes stale; failing stale trials is what re-queues it). Used for tuning and retraining alike.
    ``refresh``, called before every pass, returns queues that have become ready since (a retraining whose seed
    probe another worker just finished): they join the round, so no worker idles on a barrier it need not keep.
    """
    worker = _Drain(url, storage, progress)
    queues = dict(queues)
    done: set[str] = set()
    quiet = _QuietExpectedFailures()
    # a logger's own filters do not see its children's records (Optuna logs from optuna.study._optimize): filter
    # at the handlers that print them
    handlers = [*logging.getLogger("optuna").handlers, *logging.getLogger().handlers]
    for h in handlers:
        h.addFilter(quiet)
    wait = IDLE_POLL[0]
    try:
        while deadline is None or time.time() <= deadline:
            queues.update(refresh() if refresh is not None else {})
            if len(done) >= len(queues):
                break
            ran_any = False
            for key, (study, objective) in queues.items():
                if key in done:
                    continue
                interrupts.check()
                ran = worker.step(key, study, objective)
                if ran is None and worker.extended(study, objective):
                    ran = True  # the convergence rule queued more trials
                if ran is None:
                    done.add(key)
                ran_any = ran_any or bool(ran)
            if not ran_any and len(done) < len(queues):
                # others' trials still run: poll soon (the last one usually ends within seconds, and this
                # worker's exit is what the launcher waits for), then less often, up to every 5 s
                time.sleep(min(wait, heartbeat))
                wait = min(IDLE_POLL[1], 2 * wait)
            elif ran_any:
                wait = IDLE_POLL[0]
    finally:
        for h in handlers:
            h.removeFilter(quiet)
    if deadline is not None and time.time() > deadline:
        _mark_timeouts(url, {k: q for k, q in queues.items() if k not in done})
    return worker.stats


def _mark_timeouts(url: str, cut: Mapping[str, tuple[optuna.Study, Any]]) -> None:
    """The convergence budgets a deadline cut say so (a later run resumes them)."""
    for study, objective in cut.values():
        if isinstance(objective, Objective) and objective.spec.budget_rule is not None:
            settle.mark_timeout(url, study)


def _failed_elsewhere(study: optuna.Study, number: int | None) -> bool:
    """Whether trial ``number`` is FAILED although this worker was still running it (a stale-looking heartbeat)."""
    if number is None:
        return False
    return study.get_trials(deepcopy=False)[number].state == optuna.trial.TrialState.FAIL


def _claimed_since(study: optuna.Study, running_before: set[int]) -> int | None:
    """The trial this worker claimed: a trial RUNNING now that was not before. Another worker cannot have claimed
    one in between, since claims happen under the lock this worker still held."""
    with contextlib.suppress(Exception):
        new = [
            t.number
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.number not in running_before
        ]
        return max(new) if new else None
    return None


def _wait_while_running(url: str, study: optuna.Study, number: int, poll: float = 1.0) -> None:
    """Until trial ``number`` (running in another worker) finishes; a stale one is failed and re-queued here, so
    a dead owner does not hold this worker for ever. An interrupt still stops the wait."""
    while study.get_trials(deepcopy=False)[number].state == optuna.trial.TrialState.RUNNING:
        interrupts.check()
        fail_dead_workers(url, study)
        time.sleep(poll)


def _requeue_dropped(url: str, study: optuna.Study, number: int) -> None:
    """Queue the ticket of FAILED trial ``number`` again (same parameters, ticket and seeds) unless a live trial
    holds it: whoever failed the trial (a stale heartbeat, an interrupt) normally re-queued it already, and a
    ticket must never be left with no trial to run it."""
    trial = study.get_trials(deepcopy=False)[number]
    ticket = keys.plain(trial.user_attrs).get(keys.TICKET)
    if trial.state != optuna.trial.TrialState.FAIL or ticket is None:
        return
    with claim_lock(url, study.study_name):
        trials = study.get_trials(deepcopy=False)
        live = {keys.plain(t.user_attrs).get(keys.TICKET) for t in trials if t.state in LIVE}
        if ticket not in live:
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trials[number])


def _interrupted(study: optuna.Study, number: int | None) -> NoReturn:
    """Re-queue the trial an interrupt stopped (:func:`_requeue_interrupted`) and say so."""
    if not _requeue_interrupted(study, number):
        raise Interrupted(
            f"interrupted: trial {number} of {study.study_name} could not be re-queued (the database did not "
            "answer); the next run fails it by its stale heartbeat and runs it again"
        ) from None
    where = f"trial {number} of {study.study_name}" if number is not None else "nothing was running"
    raise Interrupted(f"interrupted: {where} re-queued; run again to resume") from None


def _requeue_interrupted(study: optuna.Study, number: int | None, attempts: int = 3) -> bool:
    """Fail the trial an interrupt (Ctrl-C, SIGTERM) stopped, if Optuna did not get to, and queue it again with the
    same parameters and ticket, as the heartbeat's retry would for a dead worker: an interrupted worker never leaves
    a trial RUNNING and never drops a ticket. A busy database (another worker writing as every worker stops) is
    tried again; ``False`` if it never answered (the next run fails the trial by its stale heartbeat instead)."""
    if number is None:
        return True
    for attempt in range(attempts):
        try:
            trial = study.get_trials(deepcopy=False)[number]
            if trial.state == optuna.trial.TrialState.RUNNING:
                study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                trial = study.get_trials(deepcopy=False)[number]
            if trial.state == optuna.trial.TrialState.FAIL and keys.TICKET in keys.plain(trial.user_attrs):
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)
            return True
        except Exception as exc:  # shutting down: say what failed, never mask the interrupt
            log.warning(
                "re-queuing trial %d of %s (attempt %d): %s", number, study.study_name, attempt + 1, exc
            )
            time.sleep(0.5 * (attempt + 1))
    return False


def prepare_worker(device: str) -> None:
    """What a held worker (``hpo worker --held``) does while its launcher checks the study: its imports are paid
    by now; plan its threads and build (or load) its kernels, so that when the go comes only the data is left."""
    dev = resolve_device(device)
    threads.install_for(dev)
    kernel_provenance(dev)


def run_worker(
    spec: StudySpec,
    storage_url: str | None = None,
    *,
    device: str = "auto",
    worker_index: int = 0,
    deadline: float | None = None,
    progress: Any = None,
    allow_changed: bool = False,
    dataset: TabularDataset | None = None,
) -> WorkerStats:
    """Run the queued tuning trials of every architecture of ``spec``.

    The worker registers in the database first; the id it gets seeds its sampler, and every trial it runs records
    that id and the seed. ``worker_index`` only labels the worker's live line. ``dataset``: the study's data when
    the caller loaded it already (``hpo run`` with one worker), so it is not prepared twice."""
    url = normalise_url(storage_url)
    storage = open_storage(url, create=False)
    require_studies(spec, storage, url)
    dev = resolve_device(device)
    plan = threads.install_for(dev)  # before any work: this worker's share of the machine's cores
    ds = (dataset or load_study_dataset(spec)).to(
        dev
    )  # once per worker: trials train on device-resident data
    worker_id = register_worker(url, storage, spec.name)
    studies = create_studies(spec, storage, ds, worker_id=worker_id, allow_changed=allow_changed)
    on_epoch = getattr(progress, "on_epoch", None)
    queues = {
        a: (
            study,
            Objective(
                spec, a, ds, str(dev), on_epoch=on_epoch, worker=worker_index, worker_id=worker_id, url=url
            ),
        )
        for a, study in studies.items()
    }
    log.info(
        "worker %d (database id %d) joined %s on %s, %d threads (%s, %.3g cores shared by %d workers), kernels: %s",
        worker_index,
        worker_id,
        spec.name,
        dev,
        plan.threads,
        plan.source,
        plan.cores,
        plan.workers,
        kernel_provenance(dev),  # built here, before the first trial's clock starts
    )
    return drain(url, storage, queues, deadline=deadline, progress=progress)
