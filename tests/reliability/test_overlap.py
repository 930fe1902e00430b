"""Fair budgets under overlapping processes, tried the way the README's multi-machine recipe is used.

Any number of `hpo run` / `hpo worker` processes, started at the same instant or one after another, on SQLite or
PostgreSQL, must end with exactly N complete trials and N distinct parameter sets per architecture; a SIGKILL and
a rerun must replay no configuration; retrain workers must never carry the storage password on their command
line. Each case runs real `hpo` processes against a real database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from hpo.config.study import load_study
from hpo.storage import keys
from hpo.storage.engine import open_storage
from tests.search.conftest import make_study

S = optuna.trial.TrialState
N = 6
TRAINING = {"epochs": 2, "patience": None, "batch_size": 256, "device": "cpu"}
ENV = {**os.environ, "HPO_HEARTBEAT_SECONDS": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


SMALL_DATA = {"kind": "synthetic", "p": 0.7, "d": 8, "n_train": 600, "n_valid": 200, "n_test": 200, "seed": 0}


def study_file(tmp_path: Path, sampler: str = "tpe", **overrides: object) -> Path:
    """The small study every case here runs: two architectures, N trials, two epochs on a small synthetic set."""
    options = {"n_startup_trials": 2} if sampler == "tpe" else {}
    settings: dict[str, object] = {
        "trials": N,
        "architectures": ["shared_bottom", "mmoe"],
        "sampler": {"name": sampler, "seed": 0, "options": options},
        "training": TRAINING,
        "dataset": SMALL_DATA,
    }
    return make_study(tmp_path, **{**settings, **overrides})


def hpo(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpo.cli", *args]


def start(cmds: list[list[str]], stagger: float) -> list[subprocess.Popen[str]]:
    procs = []
    for cmd in cmds:
        procs.append(
            subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
        time.sleep(stagger)
    return procs


def finish(procs: list[subprocess.Popen[str]], timeout: float = 600) -> None:
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, (p.args, p.returncode, err[-2000:])


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` and their command lines, read from /proc."""
    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if int(stat[1]) == pid and cmdline:  # an exiting process shows an empty command line
                    out[int(proc.name)] = cmdline
            except (OSError, IndexError):
                continue
    return out


def check_exact(url: str, path: Path, n: int = N) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Exactly n complete trials per architecture, one per ticket, n distinct parameter sets, nothing left."""
    spec = load_study(path)
    storage = open_storage(url, heartbeat=False, create=False)
    out = {}
    for arch in spec.architectures:
        trials = optuna.load_study(study_name=spec.study_name(arch.name), storage=storage).get_trials()
        complete = [t for t in trials if t.state == S.COMPLETE]
        states = Counter(t.state.name for t in trials)
        assert len(complete) == n, (arch.name, states)
        assert sorted(keys.plain(t.user_attrs)["ticket"] for t in complete) == list(range(n)), arch.name
        params = {tuple(sorted(t.params.items())) for t in complete}
        assert len(params) == n, (arch.name, [t.params for t in complete])
        assert not [t for t in complete if "reused_from" in keys.plain(t.user_attrs)]
        assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING)], states
        out[arch.name] = trials
    return out


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hpo.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.reliability
@pytest.mark.parametrize(("processes", "stagger"), [(2, 0.0), (2, 1.5), (4, 0.0), (4, 1.5)])
def test_overlapping_runs_give_exactly_n_distinct_trials(
    tmp_path: Path, url: str, processes: int, stagger: float
) -> None:
    # trials long enough (100 epochs: several seconds of work in all) that a process started 1.5 s after the first
    # still finds tickets left on a fast machine; with 2 epochs the first process once did all 12 alone
    path = study_file(tmp_path, training={**TRAINING, "epochs": 100})
    cmd = hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet")
    finish(start([cmd] * processes, stagger))
    trials = check_exact(url, path)
    # the processes really overlapped and shared the work: trials came from several registered workers
    workers = {
        keys.plain(t.user_attrs).get("worker_id")
        for ts in trials.values()
        for t in ts
        if t.state == S.COMPLETE
    }
    assert len(workers) >= 2, workers


@pytest.mark.reliability
@pytest.mark.postgres
def test_default_index_workers_propose_distinct_configurations(tmp_path: Path, postgres_url: str) -> None:
    """Four `hpo worker` without --worker-index (the README's Kubernetes Job): seeds come from the database."""
    path = study_file(tmp_path, sampler="random")
    subprocess.run(hpo("run", str(path), "--storage", postgres_url, "--workers", "0"), env=ENV, check=True)
    finish(
        start([hpo("worker", str(path), "--storage", postgres_url, "--device", "cpu", "--quiet")] * 4, 0.0)
    )
    trials = check_exact(postgres_url, path)
    seeds = {
        keys.plain(t.user_attrs)["sampler_seed"]
        for ts in trials.values()
        for t in ts
        if t.state == S.COMPLETE
    }
    assert len(seeds) >= 2, seeds  # several workers, each with its own recorded sampler seed


@pytest.mark.reliability
def test_sigkill_then_rerun_replays_no_configuration(tmp_path: Path) -> None:
    path = study_file(
        tmp_path,
        sampler="random",
        architectures=["shared_bottom"],
        training={**TRAINING, "epochs": 6, "batch_size": 32},
    )
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = subprocess.Popen(
        hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet"),
        env=ENV,
        stderr=subprocess.PIPE,
    )
    spec = load_study(path)
    deadline = time.time() + 300
    while True:
        assert time.time() < deadline and proc.poll() is None, "the run ended before it could be killed"
        if Path(tmp_path / "hpo.db").exists():
            storage = open_storage(url, heartbeat=False, create=False)
            names = {s.study_name for s in storage.get_all_studies()}
            if spec.study_name("shared_bottom") in names:
                study = optuna.load_study(study_name=spec.study_name("shared_bottom"), storage=storage)
                if len(study.get_trials(states=(S.COMPLETE,))) >= 2:
                    break
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: t.params for t in study.get_trials() if t.state == S.COMPLETE}
    time.sleep(3)  # let the killed trial's heartbeat go stale, as in real life
    subprocess.run(
        hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet"), env=ENV, check=True
    )
    (trials,) = check_exact(url, path).values()
    after = [t for t in trials if t.state == S.COMPLETE and t.number not in before]
    assert after, "the rerun ran nothing"
    for t in after:
        assert t.params not in before.values(), f"trial {t.number} replayed {t.params}"


@pytest.mark.reliability
@pytest.mark.postgres
def test_retrain_workers_carry_no_password_on_their_command_line(tmp_path: Path, postgres_url: str) -> None:
    """The password reaches children only through their environment: never in /proc/PID/cmdline."""
    secret = "s3cr@t:pw"
    head, _, rest = postgres_url.partition("://")
    user_host = rest.split("@", 1)
    assert len(user_host) == 2, postgres_url
    user = user_host[0].split(":")[0]
    url = f"{head}://{user}:{secret}@{user_host[1]}"  # trust auth: any password is accepted
    path = study_file(tmp_path)
    subprocess.run(
        hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet"), env=ENV, check=True
    )
    env = {**ENV, "HPO_STORAGE": url}
    parent = subprocess.Popen(
        hpo("retrain", str(path), "--workers", "3", "--devices", "cpu", "--seeds", "4"),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[int, str] = {}
    while parent.poll() is None:
        seen.update(children(parent.pid))
        time.sleep(0.05)
    _, err = parent.communicate()
    assert parent.returncode == 0, err
    assert len(seen) >= 2, seen  # both children were looked at while they ran
    for cmdline in seen.values():
        assert "s3cr" not in cmdline and "retrain" in cmdline, cmdline
    assert "s3cr" not in err


@pytest.mark.reliability
def test_a_worker_killed_by_a_signal_is_named_and_its_trial_retried(tmp_path: Path) -> None:
    path = study_file(tmp_path)
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    parent = subprocess.Popen(
        hpo("run", str(path), "--storage", url, "--workers", "3", "--devices", "cpu", "--quiet"),
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while len(kids := children(parent.pid)) < 2:  # three workers: the parent and two children
        assert time.time() < deadline and parent.poll() is None, "the workers did not start"
        time.sleep(0.1)
    time.sleep(4)  # they are training now
    os.kill(min(kids), signal.SIGKILL)
    _, err = parent.communicate(timeout=600)
    lines = [line for line in err.splitlines() if line.strip()]
    # the other worker retried the killed one's trial (stale heartbeat), so the work is done: exit 0, one line
    assert parent.returncode == 0, err
    assert len(lines) == 1 and "was killed by SIGKILL" in lines[0], err
    check_exact(url, path)


@pytest.mark.reliability
@pytest.mark.postgres
def test_two_runs_creating_a_new_postgres_schema_at_once(tmp_path: Path, postgres_url: str) -> None:
    """Concurrent schema creation on a fresh server database: neither process dies of the race."""
    import uuid

    import sqlalchemy as sa

    name = f"hpo_race_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        path = study_file(tmp_path)
        finish(start([hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet")] * 2, 0.0))
        check_exact(url, path)
    finally:
        sa.create_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
