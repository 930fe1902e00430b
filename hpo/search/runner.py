"""Launch, distribute and resume studies.

One Optuna study per (study spec, architecture), named ``SPEC/ARCH``. The requested trials are *tickets*: ``hpo run``
enqueues one WAITING trial per missing ticket (user attribute ``ticket``), and workers run WAITING trials until none
is left. So the number of trials is exact however many workers share the study: a worker that dies leaves its
trial RUNNING, the heartbeat marks it stale, and Optuna's ``RetryHeartbeatStaleTrialCallback`` re-queues it (same
parameters, same ticket) once. On PostgreSQL a worker claims a ticket under an advisory lock, so two workers can
never both take the last one. Running ``hpo run`` again resumes: tickets that ended FAILED are queued again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import sqlalchemy

from hpo.data._tabular import TabularDataset
from hpo.errors import ConfigError, StorageError
from hpo.search.factories import grid_points, make_pruner, make_sampler
from hpo.search.objective import Objective, objective_directions, objective_names
from hpo.search.spec import StudySpec
from hpo.search.storage import is_sqlite, mask_url, normalise_url, open_storage
from hpo.training import resolve_device

__all__ = [
    "WorkerStats",
    "create_studies",
    "drain",
    "ensure_tickets",
    "load_study_dataset",
    "run_study",
    "run_worker",
]

LIVE = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.RUNNING,
    optuna.trial.TrialState.WAITING,
)
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def load_study_dataset(spec: StudySpec) -> TabularDataset:
    from hpo.data.registry import load_dataset

    d = spec.dataset
    if d.kind == "file":
        assert d.path is not None
        return load_dataset(str(spec.base_dir / d.path))
    synthetic = {
        k: getattr(d, k) for k in ("p", "d", "c", "m", "noise", "n_train", "n_valid", "n_test", "seed")
    }
    return load_dataset(
        d.kind,
        group=d.group,
        data_dir=d.data_dir,
        synthetic=synthetic,
        split_seed=d.split_seed,
        variant=d.variant,
        drop=tuple(d.drop),
    )


def create_studies(
    spec: StudySpec, storage: optuna.storages.BaseStorage, ds: TabularDataset, *, seed_offset: int = 0
) -> dict[str, optuna.Study]:
    """Create (or load) one study per architecture, with the resolved spec stored on it."""
    directions = objective_directions(spec, ds)
    names = objective_names(spec, ds)
    resolved = spec.resolved()
    studies = {}
    for arch in (a.name for a in spec.architectures):
        study = optuna.create_study(
            storage=storage,
            study_name=spec.study_name(arch),
            directions=[optuna.study.StudyDirection[d.upper()] for d in directions],
            load_if_exists=True,
            sampler=make_sampler(spec.sampler, seed_offset=seed_offset, multi_objective=len(directions) > 1),
            pruner=make_pruner(spec.pruner),
        )
        if [d.name.lower() for d in study.directions] != directions:
            raise ConfigError(
                f"study {study.study_name} exists with directions "
                f"{[d.name.lower() for d in study.directions]}, the spec asks for {directions}"
            )
        attrs = study.user_attrs
        if "spec" not in attrs:
            study.set_user_attr("spec", resolved)
            study.set_user_attr("architecture", arch)
            study.set_user_attr("spec_name", spec.name)
            study.set_user_attr("dataset", {k: v for k, v in ds.info().items() if k != "provenance"})
            study.set_user_attr("provenance", ds.provenance)
            study.set_metric_names(names)
        studies[arch] = study
    return studies


def ensure_tickets(study: optuna.Study, n: int, params: Sequence[dict[str, Any]] | None = None) -> int:
    """Queue tickets ``0 .. n-1`` that have no live trial (none yet, or only failed ones); return how many.

    ``params[i]``, when given, fixes ticket ``i``'s parameters (a grid point)."""
    trials = study.get_trials(deepcopy=False)
    live = {t.user_attrs.get("ticket") for t in trials if t.state in LIVE}
    missing = [i for i in range(n) if i not in live]
    for i in missing:
        fixed = dict(params[i]) if params is not None else {}
        study.enqueue_trial(fixed, user_attrs={"ticket": i}, skip_if_exists=False)
    return len(missing)


def tickets_of(
    spec: StudySpec, arch: str, n_trials: int | None
) -> tuple[int | None, list[dict[str, Any]] | None]:
    """How many tickets an architecture's study gets, and their fixed parameters (grid studies only)."""
    n = n_trials if n_trials is not None else spec.trials
    if spec.sampler.name != "grid":
        return n, None
    space = next(s for name, s in spec.spaces().items() if name == arch)
    points = grid_points([space, spec.optimizer_space_loaded()])
    if n is not None and n != len(points):
        raise ConfigError(
            f"{spec.source}: trials is {n}, but the grid of {arch} has {len(points)} points; "
            f"give trials: {len(points)} or leave it out"
        )
    return len(points), points


@dataclass
class WorkerStats:
    trials_run: int = 0
    by_arch: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def _claim_lock(storage_url: str, study_name: str) -> Iterator[Any]:
    """A PostgreSQL advisory lock held while a worker checks for and claims a WAITING trial (no-op on SQLite)."""
    if is_sqlite(storage_url):
        yield None
        return
    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
    engine = _lock_engine(storage_url)
    conn = engine.connect()
    try:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        yield (conn, key)
    finally:
        with contextlib.suppress(Exception):
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock_all()"))
        conn.close()


_ENGINES: dict[str, sqlalchemy.Engine] = {}


def _lock_engine(url: str) -> sqlalchemy.Engine:
    if url not in _ENGINES:
        _ENGINES[url] = sqlalchemy.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    return _ENGINES[url]


def _release(lock: Any) -> None:
    if lock is not None:
        conn, key = lock
        with contextlib.suppress(Exception):
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})


class _Surplus(Exception):
    """A trial that holds no ticket (it would exceed the requested count): failed at once, never counted."""


def drain(
    url: str,
    queues: Mapping[str, tuple[optuna.Study, Callable[[optuna.Trial], Any]]],
    *,
    deadline: float | None = None,
    progress: Any = None,
    heartbeat: float = 10.0,
) -> WorkerStats:
    """Run the WAITING trials of every study in ``queues``, round-robin, until none is left or the deadline passes.

    While other workers' trials are still RUNNING, keep polling, so that a trial whose worker died is retried
    (its heartbeat goes stale; failing stale trials is what re-queues it). Used for tuning and retraining alike.
    """
    stats = WorkerStats()
    done: set[str] = set()
    while len(done) < len(queues):
        if deadline is not None and time.time() > deadline:
            break
        ran_any = False
        for key, (study, objective) in queues.items():
            if key in done:
                continue
            with _claim_lock(url, study.study_name) as lock:
                optuna.storages.fail_stale_trials(study)
                states = [t.state for t in study.get_trials(deepcopy=False)]
                if optuna.trial.TrialState.WAITING not in states:
                    if optuna.trial.TrialState.RUNNING not in states:
                        done.add(key)
                    continue

                def func(
                    trial: optuna.Trial, objective: Any = objective, lock: Any = lock, key: str = key
                ) -> Any:
                    _release(lock)  # the WAITING trial is ours now: let other workers claim theirs
                    if "ticket" not in trial.user_attrs:
                        trial.set_user_attr("surplus", True)
                        raise _Surplus("no ticket left: this trial would exceed the requested number")
                    if progress is not None:
                        progress.trial_started(key, trial)
                    return objective(trial)

                current: dict[str, int] = {}

                def tracked(trial: optuna.Trial, func: Any = func, current: dict[str, int] = current) -> Any:
                    current["number"] = trial.number
                    return func(trial)

                running_before = {
                    t.number
                    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                }
                try:
                    study.optimize(tracked, n_trials=1, catch=(_Surplus,))
                except KeyboardInterrupt:
                    number = current.get("number")
                    if number is None:  # interrupted inside Optuna, after the claim, before the objective ran
                        number = _claimed_since(study, running_before)
                    _requeue_interrupted(study, number)
                    raise
            ran_any = True
            stats.trials_run += 1
            stats.by_arch[key] = stats.by_arch.get(key, 0) + 1
            if progress is not None:
                progress.trial_finished(key, study)
        if not ran_any and len(done) < len(queues):
            time.sleep(min(heartbeat, 5))
    return stats


def _claimed_since(study: optuna.Study, running_before: set[int]) -> int | None:
    """The trial this worker claimed: a trial RUNNING now that was not before. Another worker cannot have claimed
    one in between, since claims happen under the advisory lock this worker still held (one worker on SQLite)."""
    with contextlib.suppress(Exception):
        new = [
            t.number
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.number not in running_before
        ]
        return max(new) if new else None
    return None


def _requeue_interrupted(study: optuna.Study, number: int | None) -> None:
    """Fail the trial an interrupt (Ctrl-C, SIGTERM) stopped, if Optuna did not get to, and queue it again with the
    same parameters and ticket, as the heartbeat's retry would for a dead worker: an interrupted worker never leaves
    a trial RUNNING and never drops a ticket."""
    if number is None:
        return
    with contextlib.suppress(
        Exception
    ):  # best effort while shutting down; the ticket is re-queued by `hpo run`
        trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        if trial.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        if trial.state == optuna.trial.TrialState.FAIL and "ticket" in trial.user_attrs:
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)


def run_worker(
    spec: StudySpec,
    storage_url: str | None = None,
    *,
    device: str = "auto",
    worker_index: int = 0,
    deadline: float | None = None,
    progress: Any = None,
) -> WorkerStats:
    """Run the queued tuning trials of every architecture of ``spec``."""
    url = normalise_url(storage_url)
    storage = open_storage(url)
    dev = resolve_device(device)
    ds = load_study_dataset(spec).to(dev)  # once per worker: trials then train on device-resident data
    studies = create_studies(spec, storage, ds, seed_offset=1000 * worker_index)
    on_epoch = getattr(progress, "on_epoch", None)
    queues = {
        a: (study, Objective(spec, a, ds, str(dev), on_epoch=on_epoch, worker=worker_index))
        for a, study in studies.items()
    }
    return drain(
        url, queues, deadline=deadline, progress=progress, heartbeat=storage.get_heartbeat_interval() or 10
    )


def run_study(
    spec: StudySpec,
    storage_url: str | None = None,
    *,
    n_trials: int | None = None,
    workers: int = 1,
    devices: Sequence[str] = ("auto",),
    quiet: bool = False,
) -> dict[str, optuna.Study]:
    """Create the studies, queue the tickets, and run ``workers`` workers spread over ``devices``."""
    url = normalise_url(storage_url)
    if workers > 1 and is_sqlite(url):
        raise StorageError(
            f"{workers} workers on SQLite ({mask_url(url)}) are refused: Optuna's RDB storage on SQLite has run one "
            "queued trial twice under concurrent workers. Use PostgreSQL, e.g. "
            "--storage postgresql://USER@HOST:5432/DB (or set HPO_STORAGE), or --workers 1"
        )
    # everything that can be wrong with the inputs is checked before the storage is opened: a bad input never
    # creates or touches a database
    ds = load_study_dataset(spec)
    spec.spaces()
    spec.optimizer_space_loaded()
    objective_directions(spec, ds)
    tickets = {a.name: tickets_of(spec, a.name, n_trials) for a in spec.architectures}
    storage = open_storage(url)
    studies = create_studies(spec, storage, ds)
    for arch, study in studies.items():
        count, points = tickets[arch]
        if count is not None:
            ensure_tickets(study, count, points)
    n = max((c for c, _ in tickets.values() if c is not None), default=None)
    if workers == 0:  # queue only: workers elsewhere (`hpo worker`) take the tickets
        return studies
    deadline = time.time() + 60 * spec.timeout_minutes if spec.timeout_minutes else None
    from hpo.search.progress import StudyProgress

    with StudyProgress(spec, studies, n, quiet=quiet) as progress:
        if workers <= 1:
            _with_signals(
                lambda: run_worker(spec, url, device=devices[0], deadline=deadline, progress=progress)
            )
        else:
            _run_processes(spec, url, workers, devices, deadline, progress)
    return studies


def _with_signals(fn: Any) -> Any:
    """Run ``fn`` so that the first SIGINT or SIGTERM stops it cleanly.

    The first signal raises KeyboardInterrupt (Optuna then marks the running trial FAILED instead of leaving it
    RUNNING, and the process exits with 130); further signals during that clean-up are ignored, so a second Ctrl-C
    cannot cut the clean-up short.
    """
    fired = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return fn()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _run_processes(
    spec: StudySpec, url: str, workers: int, devices: Sequence[str], deadline: float | None, progress: Any
) -> None:
    env = {**os.environ, "HPO_STORAGE": url, "PYTHONUNBUFFERED": "1"}
    procs = []
    for i in range(workers):
        cmd = [
            sys.executable,
            "-m",
            "hpo.cli",
            "worker",
            spec.source,
            "--device",
            devices[i % len(devices)],
            "--worker-index",
            str(i),
            "--quiet",
        ]
        if deadline is not None:
            cmd += ["--deadline", str(deadline)]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        )
    try:
        while any(p.poll() is None for p in procs):
            progress.refresh_from_storage()
            time.sleep(1.0)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
        raise
    progress.refresh_from_storage()
    failed = [(i, p) for i, p in enumerate(procs) if p.returncode not in (0, None)]
    if failed:
        i, p = failed[0]
        err = (p.stderr.read() if p.stderr else "").strip().splitlines()
        raise StorageError(f"worker {i} exited with code {p.returncode}: {err[-1] if err else 'no message'}")
