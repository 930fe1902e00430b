"""The thread plan: cores from affinity and cgroup quota, shared among a machine's workers, lowered under load."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from hpo.config.study import load_study
from hpo.cores import THREADS_ENV, WORKERS_ENV, ThreadPlan, cgroup_quota, plan_threads
from hpo.search.runner import run_study
from hpo.storage import keys
from hpo.training import threads
from tests.search.conftest import make_study


@pytest.mark.parametrize(
    ("cores", "workers", "device", "expected"),
    [
        (2, 1, "cpu", 2),
        (2, 2, "cpu", 1),
        (2, 4, "cpu", 1),
        (16, 3, "cpu", 5),
        (1.5, 1, "cpu", 1),
        (16, 2, "cuda", 2),
    ],
)
def test_workers_share_the_cores_they_have(cores: float, workers: int, device: str, expected: int) -> None:
    plan = plan_threads(workers=workers, device=device, cores=cores)
    assert (plan.threads, plan.workers, plan.fixed) == (expected, workers, False)


def test_the_launcher_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "2")
    assert plan_threads(cores=2).threads == 1
    monkeypatch.setenv(THREADS_ENV, "3")
    plan = threads.install_for("cpu")
    assert (plan.threads, plan.source, torch.get_num_threads()) == (3, "--threads", 3)
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_cgroup_v2_quota_is_the_smallest_on_the_path(tmp_path: Path) -> None:
    (tmp_path / "proc").write_text("0::/slurm/job1/step0\n")
    root = tmp_path / "cg"
    (root / "slurm/job1/step0").mkdir(parents=True)
    (root / "slurm/job1/step0/cpu.max").write_text("max 100000\n")
    (root / "slurm/job1/cpu.max").write_text("200000 100000\n")
    (root / "slurm/cpu.max").write_text("800000 100000\n")
    assert cgroup_quota(tmp_path / "proc", root) == 2.0


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    (tmp_path / "proc").write_text("4:memory:/x\n2:cpu,cpuacct:/kubepods/pod1\n")
    base = tmp_path / "cg" / "cpu,cpuacct"
    (base / "kubepods/pod1").mkdir(parents=True)
    (base / "kubepods/pod1/cpu.cfs_quota_us").write_text("150000\n")
    (base / "kubepods/pod1/cpu.cfs_period_us").write_text("100000\n")
    (base / "cpu.cfs_quota_us").write_text("-1\n")
    (base / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path / "proc", tmp_path / "cg") == 1.5
    (base / "kubepods/pod1/cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path / "proc", tmp_path / "cg") is None
    assert cgroup_quota(tmp_path / "missing", tmp_path / "cg") is None


def test_a_fixed_count_wins_and_a_planned_one_follows_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    threads.install(ThreadPlan(cores=4, workers=1, threads=4))
    monkeypatch.setattr(threads, "free_cores", lambda seconds=0.1, since=None: 1.2)
    assert threads.for_trial() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "free_cores", lambda seconds=0.1, since=None: 3.0)
    assert threads.for_trial() == 1  # looked less than REPLAN_SECONDS ago: the count stands
    monkeypatch.setattr(threads, "REPLAN_SECONDS", 0.0)
    assert threads.for_trial() == 3
    assert threads.for_trial(fixed=2) == 2  # training.threads
    threads.install(ThreadPlan(cores=4, workers=1, threads=4, source="--threads"))
    assert threads.for_trial(fixed=2) == 4  # --threads wins over training.threads


def test_the_first_replan_reads_the_load_since_install_without_waiting_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker installs its plan before loading data and building studies; the first trial reads the load over
    that time instead of sleeping a sample window of its own, and waits only for what is left of a window that
    is still too short."""
    seen: list[object] = []
    monkeypatch.setattr(threads, "free_cores", lambda seconds=0.1, since=None: seen.append(since) or 2.0)
    slept: list[float] = []
    monkeypatch.setattr(threads.time, "sleep", slept.append)
    threads.install(ThreadPlan(cores=2, workers=1, threads=2))
    installed = threads._LAST
    assert installed is not None and installed[2] is not None
    assert threads.for_trial() == 2
    assert seen == [installed[2]]  # the counters install read
    assert len(slept) == 1 and 0 < slept[0] <= threads.SAMPLE_SECONDS  # the rest of a too-short window
    threads.install(ThreadPlan(cores=2, workers=1, threads=2))
    real_now = time.monotonic
    monkeypatch.setattr(threads.time, "monotonic", lambda: real_now() + 1.0)  # data and studies took a second
    slept.clear()
    assert threads.for_trial() == 2 and slept == []


def test_the_blas_pools_are_limited_again_only_when_the_count_or_the_libraries_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threadpoolctl

    calls: list[int] = []
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", lambda limits, user_api: calls.append(limits))
    monkeypatch.setattr(threads, "_BLAS", None)
    threads.install(ThreadPlan(cores=2, workers=1, threads=2, source="--threads"))
    for _ in range(3):
        threads.for_trial()
    assert calls == [2]
    threads.install(ThreadPlan(cores=2, workers=1, threads=1, source="--threads"))
    threads.for_trial()
    assert calls == [2, 1]
    monkeypatch.setitem(sys.modules, "hpo_test_newly_imported", sys)  # a module (perhaps a BLAS) loaded since
    threads.for_trial()
    assert calls == [2, 1, 1]


def test_busy_neighbours_on_every_core_leave_one_thread() -> None:
    """Real load: one busy loop per core this process may use; the planned count falls to one thread."""
    cpus = sorted(os.sched_getaffinity(0))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in cpus]
    try:
        time.sleep(0.3)
        assert threads.free_cores(0.3) < 0.5 * len(cpus)
        before = threads.load_ticks()
        time.sleep(0.3)
        assert threads.free_cores(since=before) < 0.5 * len(cpus)  # the same reading from earlier counters
        threads.install(ThreadPlan(cores=len(cpus), workers=1, threads=max(2, len(cpus))))
        assert threads.for_trial() < max(2, len(cpus))
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def test_two_workers_on_two_cores_take_one_thread_each_and_trials_record_it(tmp_path: Path) -> None:
    """`--workers 2` on a machine of two cores (this process's affinity cut to two, which the workers inherit)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.fail("this test needs a machine of at least two cores")
    path = make_study(tmp_path, trials=3, architectures=["shared_bottom", "mmoe"])
    url = f"sqlite:///{tmp_path / 'x.db'}"
    os.sched_setaffinity(0, cpus[:2])
    try:
        run_study(load_study(path), url, workers=2, devices=["cpu"], quiet=True)
    finally:
        os.sched_setaffinity(0, cpus)
    spec = load_study(path)
    for arch in ("shared_bottom", "mmoe"):
        study = optuna.load_study(study_name=spec.study_name(arch), storage=url)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 3
        assert [keys.plain(t.user_attrs)["threads"] for t in done] == [1, 1, 1]


def test_the_threads_option_fixes_the_count_for_the_launcher_and_its_held_children(tmp_path: Path) -> None:
    """`hpo run --threads 2 --workers 2`: the count reaches the launcher's worker and its child (the environment
    they share), whatever the cores' share would have been, and every trial records it."""
    path = make_study(
        tmp_path, trials=2, architectures=["shared_bottom"], training={"epochs": 1, "device": "cpu"}
    )
    url = f"sqlite:///{tmp_path / 't.db'}"
    options = ["--storage", url, "--threads", "2", "--workers", "2", "--devices", "cpu", "--quiet"]
    subprocess.run([sys.executable, "-m", "hpo.cli", "run", str(path), *options], check=True, timeout=300)
    study = optuna.load_study(study_name=load_study(path).study_name("shared_bottom"), storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and [keys.plain(t.user_attrs)["threads"] for t in done] == [2, 2]
