"""``retrain.select``: the configuration retrained is chosen by its mean over fresh seeds, not by one lucky trial."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from hpo.cli import main
from hpo.config.naming import select_study_name
from hpo.config.study import StudySpec, load_study
from hpo.config.training import TrainConfig
from hpo.errors import ConfigError
from hpo.search import objective
from hpo.search.objective import objective_targets, valid_on_seeds
from hpo.search.retrain import retrain_study_name
from hpo.search.select import SELECT_SEED, candidates, probe_score, selection
from hpo.search.studies import load_study_dataset
from hpo.storage import keys
from tests.search.conftest import make_study

S = optuna.trial.TrialState


def _tuning(storage: optuna.storages.BaseStorage, name: str, values: list[float]) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    for i, v in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 0.001 * (i + 1)},
                distributions={"lr": FloatDistribution(1e-4, 1.0)},
                value=v,
            )
        )
    return study


def test_candidates_are_the_best_configurations_best_first() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = _tuning(storage, "s/a", [0.90, 0.95, 0.93, 0.95])
    study.add_trial(  # the same configuration as trial 1, scoring less: counted once, as its best
        optuna.trial.create_trial(
            params={"lr": 0.002}, distributions={"lr": FloatDistribution(1e-4, 1.0)}, value=0.80
        )
    )
    study.add_trial(optuna.trial.create_trial(state=S.FAIL))
    assert [t.number for t in candidates(study, 3)] == [1, 3, 2]  # a tie keeps the earlier trial first
    assert [t.number for t in candidates(study, 10)] == [1, 3, 2, 0]


def test_a_diverged_probe_seed_counts_at_the_chance_level() -> None:
    assert probe_score([0.9, 0.7], 0.5, higher_is_better=True) == pytest.approx(0.8)
    assert probe_score([0.9, math.nan], 0.5, higher_is_better=True) == pytest.approx(0.7)
    assert probe_score([0.9, math.nan], None, higher_is_better=True) == -math.inf
    assert probe_score([0.1, math.nan], None, higher_is_better=False) == math.inf


def _probed(
    tmp_path: Path, tuned: list[float], numbers: list[int], probes: dict[int, list[float]]
) -> tuple[StudySpec, str, optuna.storages.BaseStorage]:
    """A spec with retrain.select, its first architecture's tuning trials scoring ``tuned``, and its probe study
    holding candidates ``numbers``, of which those in ``probes`` finished with those seed values (in that order)."""
    spec = load_study(
        make_study(tmp_path, trials=4, retrain={"seeds": 2, "select": {"candidates": 3, "seeds": 2}})
    )
    arch = spec.architectures[0].name
    storage = optuna.storages.InMemoryStorage()
    _tuning(storage, spec.study_name(arch), tuned)
    probe = optuna.create_study(
        storage=storage, study_name=select_study_name(spec.name, arch), direction="maximize"
    )
    probe.set_user_attr(keys.key(keys.CANDIDATES), numbers)
    for number, values in probes.items():
        attrs = {keys.TICKET: numbers.index(number), keys.CANDIDATE: number, keys.PROBE_VALUES: values}
        probe.add_trial(optuna.trial.create_trial(value=float(np.mean(values)), user_attrs=keys.tag(attrs)))
    return spec, arch, storage


def test_the_choice_is_the_best_probe_mean_not_the_best_tuning_value(tmp_path: Path) -> None:
    """Trial 1 tuned best (0.95) but its probe seeds collapse half the time (mean 0.70); trial 2 (0.93) trains
    from every seed: trial 2 is retrained, and the record keeps every candidate's probe."""
    spec, arch, storage = _probed(
        tmp_path, [0.90, 0.95, 0.93], [1, 2, 0], {1: [0.9, 0.5], 2: [0.92, 0.93], 0: [0.91, 0.9]}
    )
    chosen, record = selection(spec, arch, storage)
    assert chosen == 2 and record["best_tuning_trial"] == 1
    assert [(r["trial"], r["chosen"]) for r in record["candidates"]] == [(1, False), (2, True), (0, False)]
    assert record["candidates"][0]["probe_mean"] == pytest.approx(0.70)
    assert record["candidates"][0]["tuning_value"] == 0.95
    assert record["seeds"] == [SELECT_SEED, SELECT_SEED + 1]


def test_a_tie_keeps_the_better_tuned_configuration(tmp_path: Path) -> None:
    spec, arch, storage = _probed(tmp_path, [0.90, 0.95], [1, 0], {0: [0.9, 0.9], 1: [0.9, 0.9]})
    assert selection(spec, arch, storage)[0] == 1


def test_an_unfinished_probe_is_refused_by_name(tmp_path: Path) -> None:
    spec, arch, storage = _probed(tmp_path, [0.90, 0.95], [1, 0], {0: [0.9, 0.9]})
    with pytest.raises(ConfigError, match=r"the probe of .*tuning trials \[1\] has not finished"):
        selection(spec, arch, storage)


def test_a_probe_is_finished_when_every_candidate_has_a_complete_ticket(tmp_path: Path) -> None:
    """What lets an architecture's retraining join a worker's queue (:func:`hpo.search.retrain.prepare_retrain`
    needs :func:`selection`): every candidate probed, or nothing to probe."""
    from hpo.search.select import probe_finished

    def probe(numbers: list[int], probes: dict[int, list[float]]) -> optuna.Study:
        spec, arch, storage = _probed(tmp_path, [0.90, 0.95, 0.93], numbers, probes)
        return optuna.load_study(study_name=select_study_name(spec.name, arch), storage=storage)

    assert not probe_finished(probe([1, 2, 0], {1: [0.9, 0.9], 2: [0.9, 0.9]}))
    assert probe_finished(probe([1, 2, 0], {1: [0.9, 0.9], 2: [0.9, 0.9], 0: [0.9, 0.5]}))
    assert probe_finished(probe([1], {}))  # one candidate: nothing to choose between


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objective": {"kind": "multi"}}, "retrain.select ranks configurations by one validation objective"),
        ({"retrain": {"select": {"candidates": 1}}}, "candidates"),
        ({"retrain": {"select": {"seeds": 1}}}, "seeds"),
        ({"retrain": {"select": {"probes": 3}}}, "probes"),
    ],
)
def test_a_select_that_cannot_work_is_refused_in_one_line(
    tmp_path: Path, overrides: dict, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"retrain": {"seeds": 2, "select": {"candidates": 2, "seeds": 2}}}
    if "retrain" in overrides:
        base["retrain"]["select"].update(overrides.pop("retrain")["select"])
    path = make_study(tmp_path, **base, **overrides)
    assert main(["validate", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path.name) in err[0] and message in err[0], err


def _tuned(tmp_path: Path, *, trials: int, epochs: int) -> tuple[Path, str]:
    """The smoke study with retrain.select (2 candidates, 2 probe seeds), tuned into a fresh SQLite file."""
    path = make_study(
        tmp_path,
        trials=trials,
        retrain={"seeds": 2, "select": {"candidates": 2, "seeds": 2}},
        training={"epochs": epochs, "patience": None, "batch_size": 256, "device": "cpu"},
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    return path, url


@pytest.mark.usefixtures("one_thread")  # compared to the bit
def test_two_workers_probe_each_candidate_once_and_retrain_the_choice(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`hpo retrain --workers 2`: the probe's tickets are shared between the workers, each candidate probed once
    on the probe seeds (values that training the stored configuration on those seeds gives again, to the bit, at
    the thread count each seed records), the choice retrained; running again adds nothing."""
    path, url = _tuned(tmp_path, trials=4, epochs=2)
    args = ["retrain", str(path), "--storage", url, "--devices", "cpu", "--workers", "2", "--quiet"]
    capfd.readouterr()
    assert main(args) == 0
    assert (
        "exited with code" not in capfd.readouterr().err
    )  # the second worker joined the probe, then the seeds
    spec = load_study(path)
    ds = load_study_dataset(spec)
    for arch in (a.name for a in spec.architectures):
        probe = optuna.load_study(study_name=select_study_name(spec.name, arch), storage=url)
        tickets = [keys.plain(t.user_attrs)[keys.TICKET] for t in probe.get_trials() if t.state == S.COMPLETE]
        assert sorted(tickets) == [0, 1], arch  # each candidate once
        retrained = keys.plain(
            optuna.load_study(study_name=retrain_study_name(spec, arch), storage=url).user_attrs
        )
        record = retrained[keys.SELECTION]
        chosen = [r["trial"] for r in record["candidates"] if r["chosen"]]
        assert chosen == [retrained[keys.TUNING_TRIAL]]
        sign = 1.0 if probe.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0  # the smoke's is mse
        assert chosen == [max(record["candidates"], key=lambda r: sign * r["probe_mean"])["trial"]]
        tuning = optuna.load_study(study_name=spec.study_name(arch), storage=url)
        first = record["candidates"][0]
        assert first["trial"] == tuning.best_trial.number  # the candidates start at the best tuning trial
        stored = keys.plain(tuning.trials[first["trial"]].user_attrs)
        hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in stored[keys.MODEL_CONFIG].items()}
        cfg = TrainConfig(**{**stored[keys.TRAIN_CONFIG], "device": "cpu"})
        again = valid_on_seeds(spec, arch, ds, hyper, cfg, record["seeds"], objective_targets(spec, ds), "t")
        assert again == first["probe_values"] and np.mean(again) == pytest.approx(first["probe_mean"])
        for t in probe.get_trials(states=[S.COMPLETE]):  # each seed's thread count, for whoever reproduces it
            assert keys.plain(t.user_attrs)[keys.PROBE_THREADS] == {str(s): 1 for s in record["seeds"]}
    counts = _trial_counts(url)
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert _trial_counts(url) == counts


def _trial_counts(url: str) -> dict[str, int]:
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}


def test_the_report_lays_out_every_candidates_probe(tmp_path: Path) -> None:
    """The report's #selection section and its CSV hold one row per candidate, the retrained one marked, read
    from the storage and, the same, from an export."""
    import pandas as pd

    path, url = _tuned(tmp_path, trials=3, epochs=1)
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert main(["report", str(path), "--storage", url, "--out", str(tmp_path / "r.html")]) == 0
    assert main(["export", str(path), "--storage", url, "--out", str(tmp_path / "ex")]) == 0
    assert (
        main(["report", str(path), "--from-tables", str(tmp_path / "ex"), "--out", str(tmp_path / "x.html")])
        == 0
    )
    page = (tmp_path / "r.html").read_text()
    assert '<section id="selection"><h2>How the retrained configurations were chosen</h2>' in page
    frame = pd.read_csv(tmp_path / "r_selection.csv")
    spec = load_study(path)
    assert list(frame.architecture.unique()) == [a.name for a in spec.architectures]
    assert (frame.groupby("architecture").size() == 2).all() and (
        frame.groupby("architecture").retrained.sum() == 1
    ).all()
    for arch, g in frame.groupby("architecture"):
        attrs = keys.plain(
            optuna.load_study(study_name=retrain_study_name(spec, arch), storage=url).user_attrs
        )
        assert int(g[g.retrained].tuning_trial.iloc[0]) == attrs[keys.TUNING_TRIAL]
    pd.testing.assert_frame_equal(frame, pd.read_csv(tmp_path / "x_selection.csv"))


def test_a_probe_ticket_writes_how_far_it_has_come(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe ticket of a wide configuration trains its seeds for most of an hour: between epochs it writes its
    live attribute (worker, epoch, seeds still training, their mean validation metric), as a retraining chunk does,
    so `hpo status` and the dashboard show its epoch, not "starting". Written every epoch here (interval 0)."""
    monkeypatch.setattr(objective, "LIVE_SECONDS", 0.0)
    path, url = _tuned(tmp_path, trials=3, epochs=2)
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    for arch in (a.name for a in spec.architectures):
        probe = optuna.load_study(study_name=select_study_name(spec.name, arch), storage=url)
        for t in probe.get_trials(states=[S.COMPLETE]):
            live = keys.plain(t.user_attrs)[keys.LIVE]
            assert live["worker"] == 0 and live["epoch"] == 2 and 1 <= live["training"] <= 2, (arch, live)
            assert live["metric"] == "y1.mse" and np.isfinite(live["value"])  # the smoke objective's task


@pytest.mark.usefixtures("one_thread")  # compared to the bit
def test_a_killed_probe_ticket_keeps_the_seeds_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wide configuration's probe seeds train one at a time on a CPU, for up to an hour in all: a worker stopped
    after a ticket's first seed must not lose it. The ticket records each seed as it finishes; its retry (the
    next `hpo retrain`) trains only the others and reaches the values a ticket run whole gives, to the bit."""
    import signal

    from hpo.search import interrupts, select

    monkeypatch.setattr(objective, "cpu_chunk_cap", lambda _bytes: 1)  # one seed a part, as a wide one's
    path, url = _tuned(tmp_path, trials=3, epochs=1)
    real = select.valid_on_seeds
    trained: list[list[int]] = []

    def stopped_after_one_seed(*args: object, **kw: Any) -> list[float]:
        trained.append(list(args[5]))  # type: ignore[arg-type]
        record = kw["on_part"]

        def then_stop(part: dict[int, float]) -> None:
            record(part)
            interrupts.request(signal.SIGTERM)  # what the handler records before it raises
            raise KeyboardInterrupt

        return real(*args, **{**kw, "on_part": then_stop})

    args = ["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]
    monkeypatch.setattr(select, "valid_on_seeds", stopped_after_one_seed)
    try:
        assert main(args) == 128 + signal.SIGTERM
    finally:
        interrupts.clear(forget=True)
    assert trained == [[SELECT_SEED, SELECT_SEED + 1]]  # the first ticket, stopped after its first seed

    def counting(*args: object, **kw: Any) -> list[float]:
        trained.append(list(args[5]))  # type: ignore[arg-type]
        return real(*args, **kw)

    monkeypatch.setattr(select, "valid_on_seeds", counting)
    assert main(args) == 0
    # the retry trained the seed left, not the finished one; every other ticket both (4 candidates, 2 each)
    assert sorted(trained[1:]) == [[SELECT_SEED, SELECT_SEED + 1]] * 3 + [[SELECT_SEED + 1]]
    spec = load_study(path)
    ds = load_study_dataset(spec)
    arch = spec.architectures[0].name
    probe = optuna.load_study(study_name=select_study_name(spec.name, arch), storage=url)
    failed = [t for t in probe.get_trials() if t.state == S.FAIL]
    assert len(failed) == 1
    number = keys.plain(failed[0].user_attrs)[keys.CANDIDATE]
    retry = [
        t for t in probe.get_trials(states=[S.COMPLETE]) if keys.plain(t.user_attrs)[keys.CANDIDATE] == number
    ]
    assert len(retry) == 1
    attrs = keys.plain(retry[0].user_attrs)
    assert attrs[keys.PROBE_REUSED] == [SELECT_SEED]
    stored = keys.plain(
        optuna.load_study(study_name=spec.study_name(arch), storage=url).trials[number].user_attrs
    )
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in stored[keys.MODEL_CONFIG].items()}
    cfg = TrainConfig(**{**stored[keys.TRAIN_CONFIG], "device": "cpu"})
    whole = valid_on_seeds(spec, arch, ds, hyper, cfg, attrs[keys.SEEDS], objective_targets(spec, ds), "t")
    assert attrs[keys.PROBE_VALUES] == whole
    assert not list((tmp_path / "s.db.checkpoints").rglob("*.pt"))  # each finished seed's checkpoint removed
