from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest

from hpo.cli import main
from hpo.config.study import load_study
from hpo.search.runner import run_study
from hpo.search.studies import create_studies, load_study_dataset
from hpo.search.tickets import ensure_tickets
from hpo.search.worker import drain
from hpo.storage import keys
from hpo.storage.engine import mask_url, open_storage
from tests.search.conftest import make_study

S = optuna.trial.TrialState
SLOW_TRAINING = {"epochs": 40, "patience": None, "batch_size": 64, "device": "cpu"}


def check_study(url: str, spec_path: Path, n: int) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Every architecture: exactly n complete trials, one per ticket, nothing left running, budget held."""
    spec = load_study(spec_path)
    storage = open_storage(url, heartbeat=False)
    out = {}
    for arch in spec.architectures:
        trials = optuna.load_study(study_name=spec.study_name(arch.name), storage=storage).get_trials()
        complete = [t for t in trials if t.state == S.COMPLETE]
        assert len(complete) == n, (arch.name, Counter(t.state.name for t in trials))
        assert sorted(keys.plain(t.user_attrs)["ticket"] for t in complete) == list(
            range(n)
        )  # none ran twice
        assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING)]
        assert not [t for t in trials if keys.plain(t.user_attrs).get("surplus")]
        for t in complete:
            assert max(keys.plain(t.user_attrs)["units_per_layer"]) <= 2048
            for key in (
                "metrics",
                "parameter_count",
                "epochs_run",
                "wall_time",
                "device",
                "versions",
                "code_revision",
                "model_config",
                "init_seed",
            ):
                assert key in keys.plain(t.user_attrs), key
            assert set(keys.plain(t.user_attrs)["metrics"]) == {"train", "valid", "test"}
        out[arch.name] = trials
    return out


@pytest.mark.parametrize("sampler", ["gp", "tpe"])
def test_sqlite_study_end_to_end(tmp_path: Path, sampler: str) -> None:
    path = make_study(tmp_path, sampler={"name": sampler, "seed": 1, "options": {"n_startup_trials": 2}})
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    studies = run_study(load_study(path), url, n_trials=4, devices=["cpu"], quiet=True)
    trials = check_study(url, path, 4)
    study = studies["mmoe"]
    assert keys.plain(study.user_attrs)["spec"]["name"] == load_study(path).name
    assert keys.plain(study.user_attrs)["spec"]["search_spaces"]["mmoe"]["params"]["n_experts"]["high"] == 16
    assert study.metric_names == ["valid y1 MSE"]
    assert all(t.params.keys() == {"layer_units", "n_experts", "tower_units", "lr"} for t in trials["mmoe"])
    # running again with more trials resumes: the first four are kept, two more run
    run_study(load_study(path), url, n_trials=6, devices=["cpu"], quiet=True)
    check_study(url, path, 6)


def test_gp_sampler_never_falls_back_to_independent_sampling(tmp_path: Path) -> None:
    path = make_study(tmp_path, sampler={"name": "gp", "seed": 0, "options": {"n_startup_trials": 2}})
    with pytest.warns() as record:
        import warnings

        warnings.warn("sentinel", UserWarning, stacklevel=1)
        run_study(load_study(path), f"sqlite:///{tmp_path / 'a.db'}", n_trials=5, devices=["cpu"], quiet=True)
    assert not [w for w in record if "independent" in str(w.message).lower()]


def test_several_workers_on_sqlite_cooperate(tmp_path: Path) -> None:
    """`--workers 2` on SQLite: the file lock and the ticket claims make the processes share the work exactly."""
    path = make_study(tmp_path, trials=3, architectures=["shared_bottom"])
    url = f"sqlite:///{tmp_path / 'x.db'}"
    run_study(load_study(path), url, workers=2, devices=["cpu"], quiet=True)
    check_study(url, path, 3)


def test_status_json_lists_studies_with_trial_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_study(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", str(path), "--storage", url, "--n-trials", "2", "--devices", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", "--storage", url, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["architecture"] for e in entries} == {"shared_bottom", "mmoe"}
    for e in entries:
        assert e["trials"]["complete"] == 2 and e["trials"]["running"] == 0
        assert "value" in e["best"] and "params" in e["best"]


def test_unreachable_storage_is_a_clear_error_within_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.time()
    rc = main(["status", "--storage", "postgresql://postgres:secret@127.0.0.1:1/nowhere"])
    assert rc == 2 and time.time() - t0 < 15
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open storage postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere")
    assert "secret" not in err and err.count("\n") == 1


def test_mask_url_hides_passwords() -> None:
    assert mask_url("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"
    # a raw "@" (or ":" or "/") in the password is part of it: the user part ends at the last "@"
    assert mask_url("postgresql://postgres:p@w@host:5432/db") == "postgresql://postgres:***@host:5432/db"
    assert mask_url("postgresql://u:a:b/c@host/db") == "postgresql://u:***@host/db"
    assert mask_url("sqlite:///hpo.db") == "sqlite:///hpo.db"


def _worker(
    path: Path, url: str, index: int = 0, extra_env: dict[str, str] | None = None, *extra: str
) -> subprocess.Popen:
    env = {**os.environ, "HPO_HEARTBEAT_SECONDS": "1", **(extra_env or {})}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpo.cli",
            "worker",
            str(path),
            "--storage",
            url,
            "--device",
            "cpu",
            "--worker-index",
            str(index),
            "--quiet",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_running(url: str, name: str, timeout: float = 60) -> optuna.trial.FrozenTrial:
    storage = open_storage(url, heartbeat=False)
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        except KeyError:  # the study is not created yet
            time.sleep(0.2)
            continue
        running = [t for t in trials if t.state == S.RUNNING]
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError("no trial started")


def test_ctrl_c_leaves_nothing_running_and_rerun_resumes(tmp_path: Path) -> None:
    path = make_study(tmp_path, architectures=["mmoe"], training=SLOW_TRAINING)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpo.cli",
            "run",
            str(path),
            "--storage",
            url,
            "--n-trials",
            "3",
            "--devices",
            "cpu",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    name = load_study(path).study_name("mmoe")
    _wait_for_running(url, name)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT, err  # cleaned up, then ended by the signal: a shell shows 130
    trials = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False)).get_trials()
    assert not [t for t in trials if t.state == S.RUNNING]
    failed = [t for t in trials if t.state == S.FAIL]
    assert failed
    # one line, naming the trial and what to do; no KeyboardInterrupt traceback from us or from Optuna
    assert err.strip() == f"interrupted: trial {failed[0].number} of {name} re-queued; run again to resume", (
        err
    )
    fast = make_study(tmp_path, architectures=["mmoe"])
    fast.write_text(path.read_text().replace("epochs: 40", "epochs: 2"))
    # fewer epochs to finish quickly: a changed definition, continued on purpose
    rerun = ["run", str(fast), "--storage", url, "--n-trials", "3", "--devices", "cpu", "--quiet"]
    assert main([*rerun, "--allow-changed"]) == 0
    complete = [
        t
        for t in optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False)).get_trials()
        if t.state == S.COMPLETE
    ]
    assert sorted(keys.plain(t.user_attrs)["ticket"] for t in complete) == [0, 1, 2]


@pytest.mark.postgres
def test_postgres_four_workers_run_every_trial_once(tmp_path: Path, postgres_url: str) -> None:
    path = make_study(tmp_path, sampler={"name": "tpe", "seed": 0})
    assert (
        main(
            [
                "run",
                str(path),
                "--storage",
                postgres_url,
                "--n-trials",
                "6",
                "--workers",
                "4",
                "--devices",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    check_study(postgres_url, path, 6)


@pytest.mark.postgres
def test_postgres_killed_worker_trial_is_failed_and_retried(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_study(tmp_path, architectures=["mmoe"], training=SLOW_TRAINING)
    spec = load_study(path)
    monkeypatch.setattr("hpo.storage.engine.HEARTBEAT_SECONDS", 1)
    storage = open_storage(postgres_url)
    (study,) = create_studies(spec, storage, load_study_dataset(spec)).values()
    ensure_tickets(study, 3)
    victim = _worker(path, postgres_url, 0)
    killed = _wait_for_running(postgres_url, study.study_name)
    time.sleep(1.0)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    fast = make_study(tmp_path, architectures=["mmoe"])
    fast.write_text(path.read_text().replace("epochs: 40", "epochs: 2"))
    survivor = _worker(fast, postgres_url, 1, None, "--allow-changed")  # fewer epochs, on purpose
    _, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err
    trials = check_study(postgres_url, fast, 3)["mmoe"]
    failed = [t for t in trials if t.state == S.FAIL]
    assert [t.number for t in failed] == [killed.number]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].state == S.COMPLETE
    # the retry carries every parameter the dead trial had suggested when it died (it may have died before
    # suggesting all of them: the rest are then sampled), and its ticket
    dead = next(t for t in trials if t.number == killed.number)
    assert dead.params.items() <= retried[0].params.items()
    assert keys.plain(retried[0].user_attrs)["ticket"] == keys.plain(killed.user_attrs)["ticket"]


def test_diverging_and_out_of_memory_trials_are_pruned_with_their_reason(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The worker goes on, the reason is recorded, and the best value is never a NaN."""
    import torch

    import hpo.search.objective as objective_module

    path = make_study(tmp_path, architectures=["mmoe"], sampler={"name": "random", "seed": 0})
    real_train = objective_module.train
    calls = {"n": 0}

    def faulty_train(model, ds, cfg, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:  # a diverging run: weights blow up to NaN
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        if calls["n"] == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_train(model, ds, cfg, **kw)

    monkeypatch.setattr(objective_module, "train", faulty_train)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    (study,) = run_study(load_study(path), url, n_trials=4, devices=["cpu"], quiet=True).values()
    trials = study.get_trials()
    pruned = [t for t in trials if t.state == S.PRUNED]
    reasons = sorted(keys.plain(t.user_attrs)["pruned_reason"] for t in pruned)
    assert len(pruned) == 2 and len([t for t in trials if t.state == S.COMPLETE]) == 2
    assert reasons[0].startswith("non-finite training loss") or "never finite" in reasons[0]
    assert reasons[1].startswith("out of memory on cpu: CUDA out of memory")
    assert study.best_value == study.best_value  # not NaN


def test_interrupt_between_claim_and_objective_leaves_nothing_running(tmp_path: Path) -> None:
    """Ctrl-C can land inside Optuna after a ticket was claimed (RUNNING) but before the objective started, where
    Optuna does not fail the trial: the worker fails and re-queues it itself (a race CI once hit)."""

    class Interrupting(optuna.samplers.RandomSampler):
        def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            raise KeyboardInterrupt

    url = f"sqlite:///{tmp_path / 'i.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="i", sampler=Interrupting())
    ensure_tickets(study, 2)
    with pytest.raises(KeyboardInterrupt, match="trial 0 of i re-queued; run again to resume"):
        drain(url, storage, {"a": (study, lambda trial: 1.0)}, heartbeat=1)
    trials = study.get_trials()
    assert not [t for t in trials if t.state == S.RUNNING]
    failed = [t for t in trials if t.state == S.FAIL]
    assert len(failed) == 1 and keys.plain(failed[0].user_attrs)["ticket"] == 0
    requeued = [t for t in trials if t.state == S.WAITING and keys.plain(t.user_attrs).get("ticket") == 0]
    assert len(requeued) == 1


def test_interrupt_while_optuna_tells_a_finished_trial_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM can land while Optuna records a trial the objective finished: Optuna's clean-up then raises
    UnboundLocalError from its ``finally`` (the interrupt is only its context), which is no KeyboardInterrupt.
    The worker still fails and re-queues the trial and says it was interrupted (a race CI hit once, in a child
    worker whose error only its own stderr file saw)."""
    import optuna.study._optimize as optimize_module

    from hpo.search import interrupts

    real_tell = optimize_module._tell_with_warning

    def interrupted_tell(**kw: object) -> object:
        interrupts.request(signal.SIGTERM)  # what the handler records before it raises
        raise KeyboardInterrupt

    monkeypatch.setattr(optimize_module, "_tell_with_warning", interrupted_tell)
    url = f"sqlite:///{tmp_path / 't.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="t", sampler=optuna.samplers.RandomSampler())
    ensure_tickets(study, 2)
    try:
        with pytest.raises(KeyboardInterrupt, match="trial 0 of t re-queued; run again to resume"):
            drain(url, storage, {"a": (study, lambda trial: 1.0)}, heartbeat=1)
    finally:
        interrupts.clear(forget=True)
    monkeypatch.setattr(optimize_module, "_tell_with_warning", real_tell)
    trials = study.get_trials()
    assert not [t for t in trials if t.state == S.RUNNING]
    requeued = [t for t in trials if t.state == S.WAITING and keys.plain(t.user_attrs).get("ticket") == 0]
    assert len(requeued) == 1


def test_workers_run_the_spec_stored_on_the_study_not_the_yaml(tmp_path: Path) -> None:
    """`hpo worker NAME --stored` (what hpo's own launcher starts) needs no YAML: the coordinator's spec, search
    spaces included, is read back from the studies."""
    path = make_study(
        tmp_path, trials=2, architectures=["shared_bottom"], training={"epochs": 1, "device": "cpu"}
    )
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert main(["run", str(path), "--storage", url, "--workers", "0"]) == 0
    name = load_study(path).name
    path.unlink()
    shutil.rmtree(tmp_path / "search_spaces")
    assert main(["worker", name, "--stored", "--storage", url, "--device", "cpu", "--quiet"]) == 0
    storage = open_storage(url, heartbeat=False)
    trials = optuna.load_study(study_name=f"{name}/shared_bottom", storage=storage).get_trials()
    assert sorted(keys.plain(t.user_attrs)["ticket"] for t in trials if t.state == S.COMPLETE) == [0, 1]


class _RacyStorage(optuna.storages.InMemoryStorage):
    """Lets two workers take the same WAITING trial once, as Optuna's gRPC proxy over SQLite did before ``hpo
    proxy`` serialised state changes (26 double takes in 200, measured): both read WAITING, then both win."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=60)
        self.racing = True
        self.guard = threading.Lock()

    def set_trial_state_values(
        self, trial_id: int, state: optuna.trial.TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if state == S.RUNNING and self.racing:
            self.barrier.wait()  # both workers have chosen the same WAITING trial before either writes
            with self.guard:
                if self.get_trial(trial_id).state == S.RUNNING:
                    self.racing = False
                    return True  # the lost update: the second worker is told it took the trial too
        return super().set_trial_state_values(trial_id, state, values)


def test_a_trial_two_workers_took_at_once_runs_once_and_no_ticket_is_lost() -> None:
    """Before the fix, the second worker's ticket claim failed the trial the first was running, nothing re-queued
    it, and its retraining chunk's seeds were lost (CI: one architecture with no seed results through gRPC)."""
    storage = _RacyStorage()
    study = optuna.create_study(
        storage=storage, study_name="race", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    ensure_tickets(study, 3)
    ran: list[tuple[int, int]] = []

    def objective(trial: optuna.Trial) -> float:
        ticket = int(keys.plain(trial.user_attrs)["ticket"])
        ran.append((trial.number, ticket))
        time.sleep(0.5)
        return float(ticket)

    def worker() -> None:
        mine = optuna.load_study(study_name="race", storage=storage)
        drain("grpc://127.0.0.1:1", storage, {"a": (mine, objective)}, heartbeat=1)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not storage.racing, "the two workers never took the same trial: the test did not test the race"
    trials = study.get_trials()
    complete = sorted(keys.plain(t.user_attrs)["ticket"] for t in trials if t.state == S.COMPLETE)
    assert complete == [0, 1, 2]
    assert sorted(ticket for _, ticket in ran) == [0, 1, 2], "a ticket ran twice or not at all"
    assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING)]


def test_a_rerun_queues_again_a_ticket_whose_killed_retry_still_reads_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session stopped twice inside the same ticket (the census runs found it): the second trial is already the
    heartbeat's one retry, and the next `hpo run` finds it still RUNNING. It must be failed before the tickets are
    counted, so the ticket is queued again and runs, instead of waiting, unjudged, for yet another run."""
    monkeypatch.setattr("hpo.storage.engine.HEARTBEAT_SECONDS", 1)  # stale after 3 s
    path = make_study(tmp_path, architectures=["mmoe"])
    url = f"sqlite:///{tmp_path / 'h.db'}"
    spec = load_study(path)
    storage = open_storage(url)
    (study,) = create_studies(spec, storage, load_study_dataset(spec)).values()
    ensure_tickets(study, 2)
    waiting = [t for t in study.get_trials() if t.state == S.WAITING]
    first = next(t for t in waiting if keys.plain(t.user_attrs)["ticket"] == 0)
    for name, value in (("failed_trial", 0), ("retry_history", [0])):  # ticket 0's trial is itself a retry
        storage.set_trial_system_attr(first._trial_id, name, value)
    killed = study.ask()  # claimed by a process that dies: a heartbeat, then none
    assert keys.plain(killed.user_attrs)["ticket"] == 0
    storage.record_heartbeat(killed._trial_id)  # type: ignore[attr-defined]
    time.sleep(4.5)  # SQLite's clock for heartbeats has whole seconds: 3 s of grace plus up to 1 s
    run_study(spec, url, n_trials=2, devices=["cpu"], quiet=True)
    trials = check_study(url, path, 2)["mmoe"]
    assert [t.number for t in trials if t.state == S.FAIL] == [killed.number]
