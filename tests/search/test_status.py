"""``hpo status``: the time queued work is likely to take, from the trials already timed."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from hpo.cli import main
from hpo.search.status import storage_status
from hpo.storage import keys


def _timed_study(url: str, name: str, seconds: list[float], waiting: int, running: int) -> None:
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    for i, s in enumerate(seconds):
        trial = optuna.trial.create_trial(value=0.5 + i / 100, user_attrs={keys.key(keys.WALL_TIME): s})
        study.add_trial(trial)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))  # failed: not timed
    for _ in range(waiting):
        study.enqueue_trial({})
    for _ in range(running):
        study.ask()  # takes a waiting trial first, so these are counted once


def test_queued_work_is_estimated_from_the_mean_of_the_timed_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sum is wanted, so the mean: with one slow chunk among fast ones (seeds that collapse stop early) the
    median (325 s here) would price the five queued at 27 minutes, the mean at 78."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    _timed_study(url, "retrain", [100.0, 400.0, 250.0, 3000.0], waiting=5, running=1)  # mean 937.5
    _timed_study(url, "finished", [10.0, 20.0], waiting=0, running=0)
    _timed_study(url, "untimed", [], waiting=3, running=0)
    by_name = {e["study"]: e for e in storage_status(url)}
    # the one running trial was taken from the five waiting ones: five queued in all, each counted whole
    assert by_name["retrain"]["wall_time"] == {
        "timed": 4,
        "total_s": 3750.0,
        "mean_s": 937.5,
        "median_s": 325.0,
        "min_s": 100.0,
        "max_s": 3000.0,
        "queued": 5,
        "left_s": 4687.5,
    }
    assert "wall_time" not in by_name["finished"] and "wall_time" not in by_name["untimed"]
    assert main(["status", "--storage", url]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("retrain:"))
    assert line.endswith(
        "mean 15.6 min a trial over 4 (100 s to 50.0 min); 5 left (running or queued): about 78.1 min of one worker"
    ), line
    assert main(["status", "--storage", url, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert next(e for e in entries if e["study"] == "retrain")["wall_time"]["left_s"] == 4687.5


def test_the_work_left_in_all_sums_every_study_and_names_what_is_untimed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retraining over replicates and the defaults is a dozen studies: the last line sums their estimates, for
    one worker and over the trials running now, and counts the queued trials no estimate covers."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    _timed_study(url, "a", [100.0, 300.0], waiting=4, running=1)  # 4 left x 200 s
    _timed_study(url, "b", [60.0], waiting=3, running=1)  # 3 left x 60 s
    _timed_study(url, "finished", [10.0, 20.0], waiting=0, running=0)
    _timed_study(url, "untimed", [], waiting=5, running=0)
    from hpo.search.status import work_left

    total = work_left(storage_status(url))
    assert total == {
        "queued": 7,
        "studies": 2,
        "left_s": 980.0,
        "running": 2,
        "left_s_over_running": 490.0,
        "untimed_studies": 1,
        "untimed_queued": 5,
    }
    assert main(["status", "--storage", url]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == (
        "in all: 7 left (running or queued) in 2 studies, about 16.3 min of one worker (8.2 min over the 2 "
        "trials running now); 5 more in 1 study with nothing timed yet"
    ), last
    assert work_left([]) is None


def test_a_retraining_shows_the_mean_of_its_seeds_not_a_best_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retrain study's chunks are seeds of one configuration: status gives their mean (chunks weighted by their
    seeds), and neither `hpo status` nor `--json` offers the luckiest chunk as a "best"."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="demo/mmoe/retrain", storage=url, direction="maximize")
    study.set_user_attr(keys.key(keys.TUNING_TRIAL), 3)
    study.set_metric_names(["test income AUC (mean over the chunk's seeds)"])
    for value, seeds in ((0.90, [0, 1, 2]), (0.96, [3])):  # per seed: 0.90 x 3 and 0.96 -> mean 0.915
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={keys.key(keys.SEEDS): seeds}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    (entry,) = storage_status(url)
    assert "best" not in entry
    assert entry["seeds"]["trained"] == 4 and entry["seeds"]["mean"] == pytest.approx(0.915)
    assert main(["status", "--storage", url]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert (
        line
        == "demo/mmoe/retrain: complete 2, fail 1; mean test income AUC over 4 seeds 0.9150 (higher is better)"
    )


def test_running_trials_show_the_epoch_their_worker_last_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="demo/shared_bottom/retrain", storage=url, direction="maximize")
    live = {
        "worker": 1,
        "epoch": 5,
        "metric": "income.auc",
        "value": 0.94013,
        "training": 1,
    }  # as the trainer names it
    study.ask().set_user_attr(keys.key(keys.LIVE), live)
    study.ask()  # claimed, no epoch written yet
    (entry,) = storage_status(url)
    assert entry["running"] == [{"number": 0, **live}, {"number": 1}]
    assert main(["status", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "running 2; trial 0 at epoch 5 (valid income AUC 0.9401), trial 1 starting" in out, out
