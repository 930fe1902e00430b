"""Beyond one database server: tuning, retraining, export and the report through Optuna's gRPC storage proxy
(started by the test with `hpo proxy`) and on a journal file, with overlapping processes and a killed worker.

Neither storage offers SQL, so hpo's ticket claims, worker ids, heartbeats and seed results live in Optuna studies
and trial attributes there; these tests hold them to the same guarantees as the SQL databases.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from hpo.config.study import load_study
from hpo.storage.engine import open_storage
from tests.reliability.test_overlap import ENV, N, check_exact, finish, hpo, start, study_file

SEEDS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def grpc_url(tmp_path: Path) -> str:
    port = free_port()
    proxy = subprocess.Popen(
        hpo("proxy", "--storage", f"sqlite:///{tmp_path / 'served.db'}", "--port", str(port), "--create"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"grpc://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            open_storage(url, create=False)
            break
        except Exception:
            assert time.time() < deadline and proxy.poll() is None, "the gRPC proxy did not start"
            time.sleep(0.5)
    yield url
    proxy.send_signal(signal.SIGTERM)
    proxy.wait(timeout=30)


def tune_retrain_report(tmp_path: Path, url: str) -> None:
    path = study_file(tmp_path)
    finish(start([hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet")] * 2, 0.0))
    check_exact(url, path)
    retrain = hpo("retrain", str(path), "--storage", url, "--devices", "cpu", "--seeds", str(SEEDS))
    finish(start([[*retrain, "--workers", "2"]], 0.0))
    out = tmp_path / "export"
    finish(start([hpo("export", str(path), "--storage", url, "--out", str(out))], 0.0))
    name = path.stem
    results = pd.read_csv(out / f"{name}_seed_results.csv")
    assert sorted(results.groupby("architecture").seed.apply(sorted).tolist()) == [list(range(SEEDS))] * 2
    metrics = pd.read_csv(out / f"{name}_seed_metrics.csv")
    assert not metrics.duplicated(["architecture", "seed", "split", "task", "metric"]).any()
    report = tmp_path / "report.html"
    finish(start([hpo("report", str(path), "--storage", url, "--out", str(report))], 0.0))
    assert report.stat().st_size > 10_000


@pytest.mark.reliability
def test_a_study_runs_to_completion_through_a_grpc_proxy(tmp_path: Path, grpc_url: str) -> None:
    tune_retrain_report(tmp_path, grpc_url)


@pytest.mark.reliability
def test_a_study_runs_to_completion_on_a_journal_file(tmp_path: Path) -> None:
    tune_retrain_report(tmp_path, f"journal:///{tmp_path / 'hpo.log'}")


def wait_until_running(url: str, path: Path, timeout: float = 120) -> None:
    """Until some trial of the study is RUNNING (so that a kill lands mid-trial)."""
    spec = load_study(path)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(Exception):
            storage = open_storage(url, heartbeat=False, create=False)
            for arch in spec.architectures:
                study = optuna.load_study(study_name=spec.study_name(arch.name), storage=storage)
                if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                    return
        time.sleep(0.2)
    raise AssertionError("no trial started")


@pytest.mark.reliability
@pytest.mark.parametrize("kind", ["grpc", "journal"])
def test_a_killed_worker_is_retried_by_hpo_heartbeat(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """No Optuna heartbeat on these storages: hpo's own marks the killed worker's trial stale and re-queues it."""
    url = request.getfixturevalue("grpc_url") if kind == "grpc" else f"journal:///{tmp_path / 'hpo.log'}"
    path = study_file(tmp_path)
    victim = subprocess.Popen(
        hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet"),
        env=ENV,
        stderr=subprocess.DEVNULL,
    )
    wait_until_running(url, path)
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish(start([hpo("run", str(path), "--storage", url, "--devices", "cpu", "--quiet")], 0.0))
    trials = check_exact(url, path, N)
    assert any(t.system_attrs.get("failed_trial") is not None for ts in trials.values() for t in ts), (
        "no trial was a heartbeat retry: the kill did not land mid-trial"
    )
