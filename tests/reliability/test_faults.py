"""Fault injection against the local PostgreSQL: 8 workers on one study, random workers killed with SIGKILL and
SIGTERM during tuning trials, during retrain seed runs and between them, the PostgreSQL server restarted once in
the middle, workers that start late. Afterwards nothing is lost and nothing ran twice, and the report builds.

CI runs this (marker ``reliability``, ``HPO_TEST_POSTGRES_URL`` set, as root so that it may restart the server).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch

from hpo.cli import main
from hpo.config.study import load_study
from hpo.search.retrain import prepare_retrain, retrain_study_name
from hpo.search.studies import create_studies, load_study_dataset
from hpo.search.tickets import ensure_tickets
from hpo.storage import keys
from hpo.storage.engine import open_storage
from hpo.storage.results import read_seed_metrics, read_seed_results
from tests.conftest import SUMMARY_LINES, require
from tests.search.conftest import make_study

S = optuna.trial.TrialState
N_TRIALS, N_SEEDS, WORKERS = 8, 16, 8
ENV = {**os.environ, "HPO_HEARTBEAT_SECONDS": "1", "PYTHONUNBUFFERED": "1"}


def restart_postgres() -> None:
    clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True)
    if clusters.returncode != 0 or not clusters.stdout.strip():
        require("HPO_REQUIRE_POSTGRES", "pg_lsclusters is not available: cannot restart the server")
    version, name = clusters.stdout.split()[:2]
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        require("HPO_REQUIRE_POSTGRES", f"cannot restart PostgreSQL: {done.stderr.strip()}")
    for _ in range(60):
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError("PostgreSQL did not come back")


class Chaos:
    """Keeps ``WORKERS`` worker processes running a command, killing random ones along the way."""

    def __init__(self, cmd: list[str], rng: random.Random) -> None:
        self.cmd, self.rng = cmd, rng
        self.procs: list[subprocess.Popen[str]] = []
        self.killed = Counter[str]()
        self.started = 0

    def spawn(self) -> None:
        self.procs.append(
            subprocess.Popen(
                [*self.cmd, "--worker-index", str(self.started)],
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
        self.started += 1

    def alive(self) -> list[subprocess.Popen[str]]:
        return [p for p in self.procs if p.poll() is None]

    def kill_one(self) -> None:
        live = self.alive()
        if live:
            victim = self.rng.choice(live)
            sig = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
            victim.send_signal(sig)
            self.killed[sig.name] += 1

    def run(
        self,
        done: Callable[[], bool],
        working: Callable[[], bool],
        idle: Callable[[], bool],
        *,
        chaos_seconds: float,
        restart_at: float | None,
        late: int = 2,
        timeout: float = 600,
    ) -> int:
        """Chaos starts once trials are running (``working``) and lasts ``chaos_seconds``.

        The run ends when the work is ``done``, or when the chaos is over and the queue is ``idle`` (nothing
        WAITING or RUNNING): a ticket killed in its first run and again in its one retry is left for the rerun
        that follows, exactly as a user would rerun ``hpo run``.
        """
        for _ in range(WORKERS - late):
            self.spawn()
        t0, restarts, next_kill = time.time(), 0, 0.0
        chaos_start: float | None = None
        while not done():
            assert time.time() - t0 < timeout, "the work did not finish"
            if time.time() - t0 > 3 and self.started < WORKERS:
                self.spawn()  # late workers
            if chaos_start is None and working():
                chaos_start = time.time()
            since = time.time() - chaos_start if chaos_start is not None else -1.0
            if since >= chaos_seconds and idle():
                break
            if 0 <= since < chaos_seconds and time.time() > next_kill:
                self.kill_one()
                next_kill = time.time() + self.rng.uniform(0.4, 1.5)
            if restart_at is not None and restarts == 0 and since > restart_at:
                restart_postgres()
                restarts = 1
            while len(self.alive()) < WORKERS and self.started < 200:
                self.spawn()  # replace the dead, as a cluster scheduler would
            time.sleep(0.2)
        for p in self.alive():
            p.terminate()
        for p in self.procs:
            p.wait(timeout=60)
        return restarts


@pytest.mark.reliability
@pytest.mark.postgres
def test_faults_lose_nothing_and_double_nothing(tmp_path: Path, postgres_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("pg_ctlcluster") is None:
        require("HPO_REQUIRE_POSTGRES", "pg_ctlcluster is not installed")
    monkeypatch.setattr("hpo.storage.engine.HEARTBEAT_SECONDS", 1)
    rng = random.Random(0)
    path = make_study(
        tmp_path,
        sampler={"name": "tpe", "seed": 0},
        training={"epochs": 6, "patience": None, "batch_size": 64, "device": "cpu"},
        retrain={"seeds": N_SEEDS, "replicas_per_run": 2},
    )
    spec = load_study(path)
    storage = open_storage(postgres_url)
    ds = load_study_dataset(spec)
    studies = create_studies(spec, storage, ds)
    for study in studies.values():
        ensure_tickets(study, N_TRIALS)

    def tuning_done() -> bool:
        return all(
            len(
                {
                    keys.plain(t.user_attrs)["ticket"]
                    for t in s.get_trials(deepcopy=False, states=(S.COMPLETE,))
                }
            )
            == N_TRIALS
            for s in studies.values()
        )

    tune = Chaos(
        [
            sys.executable,
            "-m",
            "hpo.cli",
            "worker",
            str(path),
            "--storage",
            postgres_url,
            "--device",
            "cpu",
            "--quiet",
        ],
        rng,
    )

    def tuning_running() -> bool:
        return any(s.get_trials(deepcopy=False, states=(S.RUNNING,)) for s in studies.values())

    def tuning_idle() -> bool:
        return not any(s.get_trials(deepcopy=False, states=(S.RUNNING, S.WAITING)) for s in studies.values())

    t_start = time.time()
    restarts = tune.run(tuning_done, tuning_running, tuning_idle, chaos_seconds=12, restart_at=5)
    print(f"[timing] tuning chaos {time.time() - t_start:.0f}s")
    # whatever the chaos left (tickets whose retry was killed too) is queued again by a rerun, as a user would
    assert (
        main(
            [
                "run",
                str(path),
                "--storage",
                postgres_url,
                "--n-trials",
                str(N_TRIALS),
                "--devices",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )

    print(f"[timing] rerun done {time.time() - t_start:.0f}s")
    trials_checked = failed_trials = 0
    for study in studies.values():
        trials = study.get_trials()
        complete = [t for t in trials if t.state == S.COMPLETE]
        assert sorted(keys.plain(t.user_attrs)["ticket"] for t in complete) == list(
            range(N_TRIALS)
        )  # exactly, once each
        assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING)]
        for t in trials:
            if t.state == S.FAIL and not keys.plain(t.user_attrs).get("surplus"):
                later = [
                    u
                    for u in trials
                    if u.number > t.number
                    and keys.plain(u.user_attrs).get("ticket") == keys.plain(t.user_attrs).get("ticket")
                ]
                assert later, f"failed trial {t.number} was never retried"
        trials_checked += len(trials)
        failed_trials += sum(t.state == S.FAIL for t in trials)
    assert failed_trials > 0, "no kill landed inside a trial: the test would prove nothing"

    # retraining under the same treatment
    prepare_retrain(spec, storage, ds, N_SEEDS, torch.device("cpu"))
    retrain_studies = [
        optuna.load_study(study_name=retrain_study_name(spec, a.name), storage=storage)
        for a in spec.architectures
    ]
    assert all(len(s.get_trials()) == N_SEEDS // 2 for s in retrain_studies)  # chunks of two seeds

    def retrain_done() -> bool:
        return len(read_seed_results(postgres_url, spec.name)) == N_SEEDS * len(spec.architectures)

    retrain = Chaos(
        [
            sys.executable,
            "-m",
            "hpo.cli",
            "retrain",
            str(path),
            "--storage",
            postgres_url,
            "--join",
            "--devices",
            "cpu",
            "--quiet",
        ],
        rng,
    )

    def retrain_running() -> bool:
        return any(s.get_trials(deepcopy=False, states=(S.RUNNING,)) for s in retrain_studies)

    def retrain_idle() -> bool:
        return not any(s.get_trials(deepcopy=False, states=(S.RUNNING, S.WAITING)) for s in retrain_studies)

    print(f"[timing] retrain start {time.time() - t_start:.0f}s")
    retrain.run(retrain_done, retrain_running, retrain_idle, chaos_seconds=10, restart_at=None)
    assert main(["retrain", str(path), "--storage", postgres_url, "--devices", "cpu", "--quiet"]) == 0

    print(f"[timing] retrain done {time.time() - t_start:.0f}s")
    failed_chunks = sum(t.state == S.FAIL for s in retrain_studies for t in s.get_trials())
    assert failed_chunks > 0, "no kill landed inside a retrain chunk: the test would prove nothing"
    results = read_seed_results(postgres_url, spec.name)
    metrics = read_seed_metrics(postgres_url, spec.name)
    duplicates = int(results.duplicated(["architecture", "seed"]).sum()) + int(
        metrics.duplicated(["architecture", "seed", "split", "task", "metric"]).sum()
    )
    expected = {(a.name, s) for a in spec.architectures for s in range(N_SEEDS)}
    lost = len(expected - set(zip(results.architecture, results.seed, strict=True)))
    assert duplicates == 0 and lost == 0
    assert len(metrics) == len(expected) * 3 * 2 * 2

    out = tmp_path / "report.html"
    assert main(["report", str(path), "--storage", postgres_url, "--out", str(out)]) == 0
    assert out.stat().st_size > 1_000_000

    killed = tune.killed + retrain.killed
    assert sum(killed.values()) >= 8 and restarts == 1
    summary = (
        f"reliability: workers killed {sum(killed.values())} (SIGKILL {killed['SIGKILL']}, SIGTERM "
        f"{killed['SIGTERM']}), workers started {tune.started + retrain.started}, server restarts {restarts}, "
        f"trials checked {trials_checked} ({failed_trials} failed and retried), retrain chunks failed and retried "
        f"{failed_chunks}, seed results checked {len(results)}, duplicates found {duplicates}, "
        f"lost results {lost}"
    )
    SUMMARY_LINES.append(summary)
    print(summary)
