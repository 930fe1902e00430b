"""Operator paths, tried as a hostile operator would: commands aimed at studies that do not exist, a parent whose
child is killed after the work is done. Each case runs real `hpo` processes against a real database and expects
one line and a truthful exit status, with nothing created that was not asked for."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from hpo.config.study import load_study
from hpo.search.retrain import retrain_study_name
from hpo.storage import keys
from hpo.storage.engine import open_storage
from hpo.storage.results import read_seed_results
from tests.reliability.test_overlap import ENV, children, hpo, study_file


def one_line_error(cmd: list[str], *needles: str) -> str:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def study_names(url: str) -> set[str]:
    return {s.study_name for s in open_storage(url, heartbeat=False, create=False).get_all_studies()}


@pytest.mark.reliability
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_worker_on_a_database_without_the_study_creates_nothing(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'h.db'}"
    )
    optuna.create_study(study_name=f"other-{uuid.uuid4().hex[:8]}", storage=url)  # the database exists
    path = study_file(tmp_path)
    spec = load_study(path)
    before = study_names(url)
    one_line_error(
        hpo("worker", str(path), "--storage", url, "--device", "cpu"),
        spec.study_name("shared_bottom"),
        "--workers 0",
    )
    assert study_names(url) == before
    one_line_error(
        hpo("retrain", str(path), "--storage", url, "--join", "--devices", "cpu"), "nothing of", "--join"
    )
    assert study_names(url) == before


@pytest.mark.reliability
def test_a_report_of_a_study_with_no_trials_is_one_line(tmp_path: Path) -> None:
    path = study_file(tmp_path)
    spec = load_study(path)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    for arch in spec.architectures:  # created and never run, as an interrupted first `hpo run` can leave them
        optuna.create_study(study_name=spec.study_name(arch.name), storage=url)
    out = tmp_path / "r.html"
    one_line_error(hpo("report", str(path), "--storage", url, "--out", str(out)), "has no trials", "hpo run")
    assert not out.exists()


@pytest.mark.reliability
def test_a_proxy_refuses_a_sqlite_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    one_line_error(hpo("proxy", "--storage", f"sqlite:///{missing}", "--port", "1"), str(missing))
    assert not missing.exists()


@pytest.mark.reliability
def test_retraining_whose_killed_child_left_no_work_exits_zero(tmp_path: Path) -> None:
    """One of two retrain children (of three workers: the parent is the third) is killed; the others retry its
    chunk (stale heartbeat) and finish every seed. The parent names the killed child in one warning line and
    exits 0, as tuning does."""
    slow = {"epochs": 40, "patience": None, "batch_size": 32, "device": "cpu"}  # chunks of a second or more
    path = study_file(tmp_path, trials=2, retrain={"seeds": 16, "replicas_per_run": 1}, training=slow)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    subprocess.run(
        hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet"), env=ENV, check=True
    )
    parent = subprocess.Popen(
        hpo("retrain", str(path), "--storage", url, "--workers", "3", "--devices", "cpu", "--quiet"),
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.kill(min(started_workers(parent, 2)), signal.SIGKILL)  # both children are retraining chunks by then
    _, err = parent.communicate(timeout=600)
    lines = [line for line in err.splitlines() if line.strip()]
    assert parent.returncode == 0, err
    assert len(lines) == 1 and "was killed by SIGKILL" in lines[0] and "every ticket is done" in lines[0], err
    spec = load_study(path)
    seeds = read_seed_results(url, spec.name)
    for arch in ("shared_bottom", "mmoe"):
        assert sorted(seeds[seeds.architecture == arch].seed) == list(range(16)), arch
        assert retrain_study_name(spec, arch) in study_names(url)


def categorical_study(tmp_path: Path, n: int) -> Path:
    """Shared-Bottom over an 8-point categorical space (units x towers) with a fixed learning rate."""
    (tmp_path / "spaces").mkdir(exist_ok=True)
    space = {
        "architecture": "shared_bottom",
        "params": {
            "layer_units": {"type": "categorical", "choices": [8, 16, 32, 64]},
            "tower_units": {"type": "categorical", "choices": [4, 8]},
        },
        "model": {"bottom_units": "[layer_units]", "tower_units": "[tower_units]"},
    }
    (tmp_path / "spaces" / "sb.yaml").write_text(yaml.safe_dump(space))
    (tmp_path / "spaces" / "opt.yaml").write_text(
        yaml.safe_dump({"params": {"lr": {"type": "categorical", "choices": [0.01]}}})
    )
    return study_file(
        tmp_path,
        trials=n,
        architectures=[{"name": "shared_bottom", "search_space": str(tmp_path / "spaces" / "sb.yaml")}],
        optimizer_space=str(tmp_path / "spaces" / "opt.yaml"),
        training={"epochs": 15, "patience": None, "batch_size": 64, "device": "cpu"},
    )


def distinct_configurations(url: str, path: Path) -> tuple[int, int, list[optuna.trial.FrozenTrial]]:
    spec = load_study(path)
    trials = optuna.load_study(study_name=spec.study_name("shared_bottom"), storage=url).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return len(done), len({tuple(sorted(t.params.items())) for t in done}), done


@pytest.mark.reliability
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_workers_never_train_one_configuration_twice(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """`--n-trials 3 --workers 3` on an 8-point space: three complete trials, three configurations, none reused."""
    url = (
        request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'h.db'}"
    )
    path = categorical_study(tmp_path, 3)
    cmd = hpo("run", str(path), "--storage", url, "--workers", "3", "--devices", "cpu", "--quiet")
    subprocess.run(cmd, env=ENV, check=True, timeout=600)
    n, distinct, done = distinct_configurations(url, path)
    assert (n, distinct) == (3, 3), [t.params for t in done]
    assert not [t for t in done if "hpo.reused_from" in t.user_attrs]


@pytest.mark.reliability
def test_separate_workers_take_untried_points_before_reusing_any(tmp_path: Path) -> None:
    """Three `hpo worker` processes, six tickets, eight points: six distinct configurations, no result reused."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    path = categorical_study(tmp_path, 6)
    subprocess.run(hpo("run", str(path), "--storage", url, "--workers", "0"), env=ENV, check=True)
    procs = [
        subprocess.Popen(hpo("worker", str(path), "--storage", url, "--device", "cpu", "--quiet"), env=ENV)
        for _ in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=600) == 0
    n, distinct, done = distinct_configurations(url, path)
    assert (n, distinct) == (6, 6), [t.params for t in done]
    assert not [t for t in done if "hpo.reused_from" in t.user_attrs]


@pytest.mark.reliability
def test_a_changed_study_is_refused_unless_the_change_is_asked_for(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    path = study_file(tmp_path, trials=2)
    run = hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet")
    subprocess.run(run, env=ENV, check=True, timeout=300)
    spec = yaml.safe_load(path.read_text())
    spec["dataset"] = {**spec["dataset"], "p": 0.2, "d": 6}
    spec["training"] = {**spec["training"], "epochs": 3}
    spec["trials"] = 3
    path.write_text(yaml.safe_dump(spec))
    line = one_line_error([*run], "dataset.d", "dataset.p", "training.epochs", "--allow-changed")
    assert "trials" not in line.split("changed:")[1].split(")")[0]  # more trials is a resume, not a change
    one_line_error(hpo("worker", str(path), "--storage", url, "--device", "cpu"), "dataset.p")
    name = load_study(path).study_name("mmoe")
    assert len(optuna.load_study(study_name=name, storage=url).trials) == 2  # nothing was added
    subprocess.run([*run, "--allow-changed"], env=ENV, check=True, timeout=300)
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert len(trials) == 3
    later = keys.plain(trials[2].user_attrs)["definition_changes"]
    assert {"dataset.p", "training.epochs"} <= set(later[0]["fields"])
    assert "definition_changes" not in keys.plain(trials[0].user_attrs)


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def started_workers(parent: subprocess.Popen[str], n: int, db: Path | None = None) -> set[int]:
    """The parent's ``n`` child workers, once started and training (``--workers N`` starts ``N - 1`` children:
    the parent is worker 0). ``hpo run`` starts its children before its own checks (held until the studies are
    ready), so with ``db`` this also waits until a trial is running in that SQLite file."""
    deadline = time.time() + 120
    while len(kids := children(parent.pid)) < n:
        assert time.time() < deadline and parent.poll() is None, "the workers did not start"
        time.sleep(0.1)
    while db is not None and not _running(db):
        assert time.time() < deadline and parent.poll() is None, "no trial started"
        time.sleep(0.1)
    time.sleep(4)  # training now
    return set(kids)


def _running(db: Path) -> int:
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db, timeout=1)) as con:
        return int(con.execute("select count(*) from trials where state = 'RUNNING'").fetchone()[0])
    return 0


@pytest.mark.reliability
@pytest.mark.parametrize("command", ["run", "retrain"])
def test_sigterm_to_a_parent_stops_its_workers_and_says_so(tmp_path: Path, command: str) -> None:
    slow = {"epochs": 60, "patience": None, "batch_size": 32, "device": "cpu"}
    path = study_file(tmp_path, trials=4, training=slow, retrain={"seeds": 8, "replicas_per_run": 1})
    url = f"sqlite:///{tmp_path / 'h.db'}"
    if command == "retrain":
        fast = ["--n-trials", "1", "--devices", "cpu", "--quiet"]
        subprocess.run(hpo("run", str(path), "--storage", url, *fast), env=ENV, check=True, timeout=600)
    parent = subprocess.Popen(
        hpo(command, str(path), "--storage", url, "--workers", "2", "--devices", "cpu", "--quiet"),
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    kids = started_workers(parent, 1, tmp_path / "h.db")
    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert parent.returncode == -signal.SIGTERM, (
        err
    )  # cleaned up, then ended by the signal: a shell shows 143
    assert len(lines) == 1 and lines[0].startswith("interrupted: 2 workers stopped"), err
    assert not alive(kids)
    spec = load_study(path)
    name = spec.study_name("mmoe") if command == "run" else retrain_study_name(spec, "mmoe")
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.reliability
def test_workers_do_not_outlive_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    slow = {"epochs": 60, "patience": None, "batch_size": 32, "device": "cpu"}
    path = study_file(tmp_path, trials=4, training=slow)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    parent = subprocess.Popen(
        hpo("run", str(path), "--storage", url, "--workers", "2", "--devices", "cpu", "--quiet"),
        env=ENV,
        stderr=subprocess.DEVNULL,
    )
    kids = started_workers(parent, 1, tmp_path / "h.db")
    parent.kill()
    parent.wait()
    deadline = time.time() + 60
    while alive(kids):
        assert time.time() < deadline, "workers outlived their parent"
        time.sleep(0.2)


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A small file system of our own (a full disk, a read-only one): mounting needs root, as CI runs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("finished")
    path = study_file(tmp, trials=2, retrain={"seeds": 2})
    url = f"sqlite:///{tmp / 'h.db'}"
    for cmd in ("run", "retrain"):
        subprocess.run(hpo(cmd, str(path), "--storage", url, "--quiet"), env=ENV, check=True, timeout=600)
    return path, url


@pytest.mark.reliability
def test_a_full_disk_leaves_no_half_written_report_or_export(
    tmp_path: Path, finished_study: tuple[Path, str]
) -> None:
    path, url = finished_study
    with tmpfs(tmp_path / "full", "size=256k") as disk:
        (disk / "filler").write_bytes(b"\0" * (256 * 1024 - 8192))  # a few KB left: less than any report
        before = sorted(p.name for p in disk.rglob("*"))
        one_line_error(
            hpo("report", str(path), "--storage", url, "--out", str(disk / "r" / "report.html")),
            "No space left",
        )
        one_line_error(
            hpo("export", str(path), "--storage", url, "--out", str(disk / "tables")), "No space left"
        )
        assert sorted(p.name for p in disk.rglob("*")) == before  # nothing half-written, no empty folders


@pytest.mark.reliability
def test_a_read_only_disk_is_one_line(tmp_path: Path, finished_study: tuple[Path, str]) -> None:
    path, url = finished_study
    with tmpfs(tmp_path / "ro", "ro,size=64k") as disk:
        one_line_error(
            hpo("report", str(path), "--storage", url, "--out", str(disk / "report.html")), "Read-only"
        )
        one_line_error(
            hpo("export", str(path), "--storage", url, "--out", str(disk / "t")), "Read-only", str(disk)
        )
    out = tmp_path / "ok"
    subprocess.run(hpo("export", str(path), "--storage", url, "--out", str(out)), env=ENV, check=True)
    assert all(p.stat().st_size > 0 for p in out.iterdir()) and not list(out.glob(".hpo-writing-*"))


@pytest.mark.reliability
@pytest.mark.parametrize("command", ["dashboard", "proxy"])
def test_a_port_in_use_or_a_foreign_address_is_one_line(tmp_path: Path, command: str) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    optuna.create_study(storage=url)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        one_line_error(hpo(command, "--storage", url, "--port", port), f"127.0.0.1:{port}", "another --port")
    one_line_error(
        hpo(command, "--storage", url, "--host", "192.0.2.1", "--port", "8080"), "192.0.2.1:8080", "--host"
    )


def test_a_chunk_whose_worker_was_killed_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """SIGKILL to a real `hpo retrain` once its chunk has written a checkpoint: the chunk stays RUNNING until its
    heartbeat goes stale; the next `hpo retrain` re-queues it, takes it up after the epoch written (recorded as
    `resumed_after`), stores every seed and removes the checkpoint."""
    slow = {"epochs": 30, "patience": None, "batch_size": 16, "device": "cpu"}
    path = study_file(
        tmp_path, trials=1, architectures=["shared_bottom"], retrain={"seeds": 2}, training=slow
    )
    db = tmp_path / "k.db"
    url, env = f"sqlite:///{db}", {**ENV, "HPO_CHECKPOINT_SECONDS": "0"}
    subprocess.run(
        hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet"), env=env, check=True
    )
    cmd = hpo("retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet")
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "k.db.checkpoints"
    deadline = time.monotonic() + 300
    while not list(folder.rglob("*.pt")) and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.poll() is None, "the chunk ended before a checkpoint was seen: make it slower"
    worker.kill()
    worker.wait()
    time.sleep(3)  # past the 1 s heartbeat: the chunk is a dead worker's
    subprocess.run(cmd, env=env, check=True, timeout=600)
    spec = load_study(path)
    study = optuna.load_study(study_name=retrain_study_name(spec, "shared_bottom"), storage=url)
    resumed = [keys.plain(t.user_attrs).get(keys.RESUMED_AFTER) for t in study.get_trials()]
    assert sum(1 for r in resumed if r) == 1, resumed
    assert sorted(read_seed_results(url, spec.name).seed) == [0, 1]
    assert not folder.exists()
