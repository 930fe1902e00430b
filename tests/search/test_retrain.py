"""What a tuning trial stores is enough to train it again: the retraining carries the trial's configuration, not
an approximation of it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

from hpo.cli import main
from hpo.config.study import StudySpec, load_study
from hpo.config.training import TrainConfig
from hpo.models import create_model
from hpo.search import objective, retrain
from hpo.search.retrain import Chosen, retrain_study_name
from hpo.search.studies import load_study_dataset
from hpo.search.worker import drain
from hpo.storage import keys
from hpo.storage.engine import open_storage
from hpo.training.trainer import train
from tests.search.conftest import make_study


def test_a_best_trial_retrained_on_its_own_seed_scores_its_tuning_value(tmp_path: Path) -> None:
    """Rebuilt as `hpo retrain` rebuilds it (the stored model and training configuration) and trained on the
    tuning trial's own seed, each architecture's best trial gives its recorded validation value to the last bit: a
    retraining that disagrees with tuning (a retrain seed collapsing where tuning learned) is the seed's doing,
    not a configuration lost between the two."""
    path = make_study(
        tmp_path, trials=3, training={"epochs": 2, "patience": None, "batch_size": 256, "device": "cpu"}
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    ds = load_study_dataset(spec)
    (task,) = [t.name for t in ds.tasks][:1]
    for arch in spec.architectures:
        best = optuna.load_study(study_name=spec.study_name(arch.name), storage=url).best_trial
        chosen = Chosen.of_trial(best)
        hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in chosen.model_config.items()}
        cfg = TrainConfig(**{**chosen.train_config, "device": "cpu"})
        seed = spec.seed * 100_003 + best.number  # the tuning trial's seed (hpo.search.objective)
        model = create_model(arch.name, ds.spec, ds.tasks, seeds=[seed], budget=spec.budget, **hyper)
        (result,) = train(model, ds, cfg, init_seeds=[seed], data_seeds=[seed])
        assert result.metric("valid", task, "mse") == best.value, arch.name


def test_a_retraining_chunk_writes_how_far_it_has_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A chunk of a wide configuration trains for half an hour: between epochs it writes its live attribute (the
    epoch, the seeds still training, their mean validation metric) for `hpo status` and the dashboard, and logs a
    line. Written every epoch here (the interval set to 0); each chunk's last write is its last epoch."""
    monkeypatch.setattr(objective, "LIVE_SECONDS", 0.0)
    monkeypatch.setattr(
        retrain, "epoch_log", lambda name, epochs: objective.epoch_log(name, epochs, every=0.0)
    )
    epochs = 3
    path = make_study(
        tmp_path,
        trials=1,
        retrain={"seeds": 2},
        training={"epochs": epochs, "patience": None, "batch_size": 256, "device": "cpu"},
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    capfd.readouterr()
    monkeypatch.setenv("HPO_LOG_LEVEL", "info")  # as the census runs log (`hpo --log-level info`)
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    logged = "".join(capfd.readouterr())  # the JSON log lines, on stderr
    spec = load_study(path)
    for arch in spec.architectures:
        study = optuna.load_study(study_name=retrain_study_name(spec, arch.name), storage=url)
        for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]):
            live = keys.plain(t.user_attrs)[keys.LIVE]
            seeds = keys.plain(t.user_attrs)[keys.SEEDS]
            assert keys.plain(t.user_attrs)[keys.ARCHITECTURE] == arch.name  # the live view finds its row
            assert live["epoch"] == epochs and live["training"] == len(seeds) and live["worker"] == 0
            assert live["value"] > 0.0 and live["metric"] == "y1.mse"  # the tuning objective's task
            assert (
                f"{arch.name} retrain chunk {t.number} (seeds {seeds}): epoch {epochs} of at most {epochs}"
                in logged
            )


def test_retraining_an_unfinished_tuning_is_refused_before_anything_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retrain study records once what it retrains, so retraining a tuning with trials still queued or running
    (or a convergence budget not yet judged) would freeze its best so far into the comparison: `hpo retrain`
    refuses, in one line naming the study file and each unfinished architecture, before any retrain study
    exists; --unfinished retrains the best so far. A convergence budget cut by its timeout has finished for now."""
    training = {"epochs": 1, "patience": None, "batch_size": 256, "device": "cpu"}
    path = make_study(
        tmp_path, trials={"min": 2, "max": 2, "until": "settled", "tolerance": 1.0}, training=training
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    first, second = (a.name for a in spec.architectures[:2])
    one = optuna.load_study(study_name=spec.study_name(first), storage=url)
    one.enqueue_trial(one.best_trial.params)  # queued, as a run stopped before its last tickets leaves them
    one.ask()  # and claimed: running, as a killed worker's trial reads until `hpo run` re-queues it
    one.enqueue_trial(one.best_trial.params)
    two = optuna.load_study(study_name=spec.study_name(second), storage=url)
    two.set_user_attr(
        keys.key(keys.STOP_REASON), None
    )  # killed between its last trial and the rule's judgement
    capsys.readouterr()
    retrain_args = ["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]
    assert main(retrain_args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{path}: the tuning of {spec.name} has not finished" in err, err
    assert f"{first} (1 trial running, 1 queued); {second} (not yet judged by the convergence rule)" in err
    assert f"hpo run {path}" in err and "--unfinished" in err
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert not any(n.endswith("/retrain") for n in names)  # refused before anything was queued
    # a budget cut by its timeout has finished for now; a running trial has not
    one.set_user_attr(keys.key(keys.STOP_REASON), "timeout")
    two.set_user_attr(keys.key(keys.STOP_REASON), "timeout")
    assert main(retrain_args) == 2
    assert f"{first} (1 trial running)" in capsys.readouterr().err
    assert main([*retrain_args, "--unfinished"]) == 0
    for arch in spec.architectures:
        done = optuna.load_study(study_name=retrain_study_name(spec, arch.name), storage=url)
        assert done.get_trials(states=[optuna.trial.TrialState.COMPLETE])


@pytest.mark.usefixtures("one_thread")  # compared to the bit
def test_a_chunk_stopped_mid_way_resumes_from_its_checkpoint_and_ends_as_if_never_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wide configuration's chunk trains for up to an hour on a CPU: a worker stopped after its second epoch
    leaves a checkpoint beside the database; the next `hpo retrain` takes the chunk up after epoch 2 (recorded on
    it as `resumed_after`), removes the checkpoint, and every seed's metrics are those of a retraining never
    stopped, to the bit."""
    import shutil
    import signal

    import pandas as pd

    from hpo.search import interrupts
    from hpo.training import checkpoint

    path = make_study(
        tmp_path,
        trials=1,
        architectures=["shared_bottom"],
        retrain={"seeds": 2},
        training={"epochs": 4, "patience": None, "batch_size": 256, "device": "cpu"},
    )
    db = tmp_path / "r.db"
    url, twin = f"sqlite:///{db}", f"sqlite:///{tmp_path / 'twin.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    shutil.copy(db, tmp_path / "twin.db")
    args = ["retrain", str(path), "--devices", "cpu", "--quiet", "--storage"]
    assert main([*args, twin]) == 0  # the same retraining, never stopped

    monkeypatch.setattr(checkpoint, "EVERY", 0.0)  # a state at every epoch
    real = retrain.train

    def stopped_after_epoch_2(*a: object, callback: object, **kw: object) -> object:
        def then_stop(rep: object) -> None:
            callback(rep)  # type: ignore[operator]
            if rep.epoch == 2:  # type: ignore[attr-defined]
                interrupts.request(signal.SIGTERM)  # what the handler records before it raises
                raise KeyboardInterrupt

        return real(*a, callback=then_stop, **kw)

    monkeypatch.setattr(retrain, "train", stopped_after_epoch_2)
    try:
        assert main([*args, url]) == 128 + signal.SIGTERM
    finally:
        interrupts.clear(forget=True)
    folder = tmp_path / "r.db.checkpoints"
    assert len(list(folder.rglob("*.pt"))) == 1
    monkeypatch.setattr(retrain, "train", real)
    assert main([*args, url]) == 0
    assert not folder.exists()  # the finished chunk's checkpoint is gone, and the folders it made
    spec = load_study(path)
    study = optuna.load_study(study_name=retrain_study_name(spec, "shared_bottom"), storage=url)
    resumed = [keys.plain(t.user_attrs).get(keys.RESUMED_AFTER) for t in study.get_trials()]
    assert resumed.count(2) == 1, resumed
    tables = []
    for name, storage in (("a", url), ("b", twin)):
        assert main(["export", str(path), "--storage", storage, "--out", str(tmp_path / name)]) == 0
        (csv,) = (tmp_path / name).glob("*_seed_metrics.csv")
        frame = pd.read_csv(csv)
        tables.append(frame.sort_values(list(frame.columns.drop("value"))).reset_index(drop=True))
    assert len(tables[0]) > 0
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)


@contextlib.contextmanager
def another_worker_holding(
    url: str, study: optuna.Study, objective: Callable[[optuna.Trial], object], until: Callable[[], bool]
) -> Iterator[dict[str, float]]:
    """Another worker, a thread running the real drain over ``study``, whose first ticket is held until
    ``until()`` holds (or 120 s pass) and then run by ``objective``; the test's own worker runs inside the block.
    Yields when that ticket was taken and released (``started``, ``released``), for the test to tell which."""
    held: dict[str, float] = {}

    def slow(trial: optuna.Trial) -> object:
        if not held:
            held["started"] = time.time()
            while time.time() - held["started"] < 120 and not until():
                time.sleep(0.2)
            held["released"] = time.time()
        return objective(trial)

    other = threading.Thread(target=lambda: drain(url, open_storage(url), {"p": (study, slow)}))
    other.start()
    while "started" not in held:
        time.sleep(0.05)
    try:
        yield held
    finally:
        other.join()


def test_one_worker_trains_ready_seeds_while_another_holds_the_last_probe_ticket(tmp_path: Path) -> None:
    """With tuning replicates (and the defaults), one `hpo retrain` worker takes every replicate's probe tickets
    and seed chunks as one queue, an architecture's chunks joining it as soon as its probe has finished: while
    another worker holds replicate 2's first probe ticket, it trains replicate 1's and the defaults' seeds instead
    of waiting (on the census one of two workers sat 9.5 and then 8.4 minutes so), then replicate 2's once the
    other finishes. Every seed is retrained once; running again adds nothing."""
    from hpo.config.naming import select_study_name
    from hpo.search.retrain import retrain_every_spec_at_once, retrain_specs
    from hpo.search.select import SelectObjective, prepare_select

    path = make_study(
        tmp_path,
        trials=3,
        architectures=["shared_bottom"],
        replicates=2,
        retrain={"seeds": 2, "default": True, "select": {"candidates": 2, "seeds": 2}},
        training={"epochs": 1, "patience": None, "batch_size": 256, "device": "cpu"},
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    specs = retrain_specs(load_study(path))
    second = [s for s in specs if not s.is_default][1]
    others = [s for s in specs if s is not second]  # replicate 1 and the defaults
    assert len(specs) == 3

    def complete(spec: StudySpec) -> list[optuna.trial.FrozenTrial]:
        name = retrain_study_name(spec, "shared_bottom")
        if name not in {x.study_name for x in optuna.get_all_study_summaries(url)}:
            return []
        study = optuna.load_study(study_name=name, storage=url)
        return [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]

    storage = open_storage(url)
    ds = load_study_dataset(second)
    (probe,) = prepare_select(second, storage, ds, url, set()).values()
    real = SelectObjective(second, "shared_bottom", ds, storage, "cpu", worker=1, url=url)

    def others_trained() -> bool:
        return all(sum(len(keys.plain(t.user_attrs)[keys.SEEDS]) for t in complete(s)) >= 2 for s in others)

    with another_worker_holding(url, probe, real, until=others_trained) as held:
        retrain_every_spec_at_once(specs, url, device="cpu", worker_index=0)
    assert held["released"] - held["started"] < 60  # released by the others' seeds, not by the timeout
    probes = optuna.load_study(study_name=select_study_name(second.name, "shared_bottom"), storage=url)
    probe_done = max(t.datetime_complete for t in probes.get_trials() if t.datetime_complete)
    for s in specs:
        done = complete(s)
        assert sorted(seed for t in done for seed in keys.plain(t.user_attrs)[keys.SEEDS]) == [0, 1], s.name
        if s is second:  # its seeds wait for its probe
            assert min(t.datetime_start for t in done if t.datetime_start) >= probe_done
        else:  # the others' were trained while that probe ticket was held
            assert (
                max(t.datetime_complete.timestamp() for t in done if t.datetime_complete) <= held["released"]
            )
    counts = {x.study_name: x.n_trials for x in optuna.get_all_study_summaries(url)}
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert {x.study_name: x.n_trials for x in optuna.get_all_study_summaries(url)} == counts


def test_several_workers_take_every_replicate_as_one_queue(tmp_path: Path) -> None:
    """`hpo retrain --workers 2` over tuning replicates and the defaults: both workers take one queue over every
    replicate's probe and seeds (per replicate, each one's last ticket held every worker at a barrier), so a later
    replicate's tickets start while an earlier one's still run. Every seed is retrained once; rerunning adds
    nothing."""
    import itertools

    from hpo.config.naming import select_study_name
    from hpo.search.retrain import retrain_specs

    path = make_study(
        tmp_path,
        trials=3,
        architectures=["shared_bottom"],
        replicates=2,
        retrain={"seeds": 4, "replicas_per_run": 1, "default": True, "select": {"candidates": 2, "seeds": 2}},
        training={"epochs": 1, "patience": None, "batch_size": 256, "device": "cpu"},
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert (
        main(["retrain", str(path), "--storage", url, "--workers", "2", "--devices", "cpu", "--quiet"]) == 0
    )
    specs = retrain_specs(load_study(path))
    names = {x.study_name for x in optuna.get_all_study_summaries(url)}
    spans: dict[str, list[tuple[float, float]]] = {}
    for spec in specs:
        for name in (
            select_study_name(spec.name, "shared_bottom"),
            retrain_study_name(spec, "shared_bottom"),
        ):
            if name not in names:
                continue  # the defaults have no probe
            done = [
                t
                for t in optuna.load_study(study_name=name, storage=url).get_trials()
                if t.state == optuna.trial.TrialState.COMPLETE and t.datetime_start and t.datetime_complete
            ]
            spans.setdefault(spec.name, []).extend(
                (t.datetime_start.timestamp(), t.datetime_complete.timestamp()) for t in done
            )
            if name == retrain_study_name(spec, "shared_bottom"):
                seeds = sorted(s for t in done for s in keys.plain(t.user_attrs)[keys.SEEDS])
                assert seeds == [0, 1, 2, 3], spec.name
    first, second = (s.name for s in specs if not s.is_default)
    assert min(a for a, _ in spans[second]) < max(b for _, b in spans[first])  # no barrier between replicates
    every = sorted(span for v in spans.values() for span in v)
    assert any(
        b[0] < a[1] for a, b in itertools.pairwise(every)
    )  # two tickets ran at once: both workers worked
    counts = {x.study_name: x.n_trials for x in optuna.get_all_study_summaries(url)}
    assert (
        main(["retrain", str(path), "--storage", url, "--workers", "2", "--devices", "cpu", "--quiet"]) == 0
    )
    assert {x.study_name: x.n_trials for x in optuna.get_all_study_summaries(url)} == counts


def test_a_stored_retraining_s_workers_need_no_yaml(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`hpo retrain NAME --stored --workers 2` on a machine without the YAML: the child worker reads the stored
    spec too (it was handed the YAML's path, failed with "file not found", and worker 0 trained alone)."""
    path = make_study(
        tmp_path,
        trials=2,
        architectures=["shared_bottom"],
        retrain={"seeds": 4, "replicas_per_run": 1},
        training={"epochs": 1, "patience": None, "batch_size": 256, "device": "cpu"},
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    path.unlink()
    capfd.readouterr()
    args = [
        "retrain",
        spec.name,
        "--stored",
        "--storage",
        url,
        "--workers",
        "2",
        "--devices",
        "cpu",
        "--quiet",
    ]
    assert main(args) == 0
    assert "exited" not in capfd.readouterr().err  # the child worker ran, and ended well
    study = optuna.load_study(study_name=retrain_study_name(spec, "shared_bottom"), storage=url)
    seeds = [s for t in study.get_trials() for s in keys.plain(t.user_attrs).get(keys.SEEDS, [])]
    assert sorted(seeds) == [0, 1, 2, 3]


def test_a_joining_worker_takes_every_replicate_s_queued_probes_as_one_queue(tmp_path: Path) -> None:
    """`hpo retrain --join` over tuning replicates: while another worker holds replicate 1's last probe ticket,
    the joining worker probes replicate 2 instead of waiting for it (it took the replicates one after another,
    each to its end); it queues nothing itself."""
    from hpo.search.retrain import retrain_specs
    from hpo.search.select import SelectObjective, prepare_select

    path = make_study(
        tmp_path,
        trials=3,
        architectures=["shared_bottom"],
        replicates=2,
        retrain={"seeds": 2, "select": {"candidates": 2, "seeds": 2}},
        training={"epochs": 1, "patience": None, "batch_size": 256, "device": "cpu"},
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    first, second = retrain_specs(load_study(path))
    storage = open_storage(url)
    ds = load_study_dataset(first)
    probes = [next(iter(prepare_select(s, storage, ds, url, set()).values())) for s in (first, second)]
    real = SelectObjective(first, "shared_bottom", ds, storage, "cpu", worker=1, url=url)

    def second_done() -> bool:
        trials = probes[1].get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        return len(trials) == 2

    with another_worker_holding(url, probes[0], real, until=second_done) as held:
        assert main(["retrain", str(path), "--storage", url, "--join", "--devices", "cpu", "--quiet"]) == 0
    assert held["released"] - held["started"] < 60  # released by replicate 2's probe, not by the timeout
    for probe in probes:
        assert len(probe.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 2
    names = {x.study_name for x in optuna.get_all_study_summaries(url)}
    assert not {retrain_study_name(s, "shared_bottom") for s in (first, second)} & names  # it queued nothing


def test_one_study_s_seeds_train_while_another_architecture_s_probe_is_held(tmp_path: Path) -> None:
    """One study (no replicates) with `retrain.select`: while another worker holds MMoE's last probe ticket,
    `hpo retrain` trains Shared-Bottom's seeds (its probe has finished) instead of waiting for every probe."""
    from hpo.search.select import SelectObjective, prepare_select

    path = make_study(
        tmp_path,
        trials=3,
        architectures=["shared_bottom", "mmoe"],
        retrain={"seeds": 2, "select": {"candidates": 2, "seeds": 2}},
        training={"epochs": 1, "patience": None, "batch_size": 256, "device": "cpu"},
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    storage = open_storage(url)
    ds = load_study_dataset(spec)
    probe = prepare_select(spec, storage, ds, url, set())["mmoe"]
    real = SelectObjective(spec, "mmoe", ds, storage, "cpu", worker=1, url=url)

    def seeds_done() -> bool:
        name = retrain_study_name(spec, "shared_bottom")
        if name not in {x.study_name for x in optuna.get_all_study_summaries(url)}:
            return False
        done = optuna.load_study(study_name=name, storage=url).get_trials(
            deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]
        )
        return sum(len(keys.plain(t.user_attrs)[keys.SEEDS]) for t in done) == 2

    with another_worker_holding(url, probe, real, until=seeds_done) as held:
        assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert held["released"] - held["started"] < 60  # released by Shared-Bottom's seeds, not by the timeout
    for arch in ("shared_bottom", "mmoe"):
        study = optuna.load_study(study_name=retrain_study_name(spec, arch), storage=url)
        seeds = [s for t in study.get_trials() for s in keys.plain(t.user_attrs).get(keys.SEEDS, [])]
        assert sorted(seeds) == [0, 1], arch
