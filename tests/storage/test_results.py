"""Seed results: written once per seed, read back the same from SQL tables and from trial attributes."""

from __future__ import annotations

from pathlib import Path

import optuna

from hpo.storage.engine import engine_for, open_storage
from hpo.storage.results import (
    SEED_RESULTS_ATTR,
    as_attribute,
    read_seed_metrics,
    read_seed_results,
    seed_rows,
    write_seed_results,
)
from hpo.storage.tables import SEED_RESULTS, has_table
from hpo.training import TrainResult


def result(seed: int, auc: float) -> TrainResult:
    return TrainResult(
        metrics={"test": {"t": {"auc": auc}}}, curve=[], best_epoch=1, best_value=auc, metric_name="t.auc",
        epochs_run=2, steps=4, wall_time=0.5, device="cpu", parameter_count=10, init_seed=seed, data_seed=seed + 1,
    )  # fmt: skip


def test_sql_rows_are_written_once_and_reads_create_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    open_storage(url)
    assert read_seed_results(url, "s").empty and not has_table(engine_for(url), SEED_RESULTS)
    res, met = seed_rows("s", "mmoe", 3, [(0, result(0, 0.9)), (1, result(1, 0.8))], 2)
    assert write_seed_results(url, res, met) == 2
    assert write_seed_results(url, res, met) == 0  # a retried chunk doubles nothing
    df = read_seed_results(url, "s")
    assert sorted(df.seed) == [0, 1] and set(df.tuning_trial) == {3}
    assert sorted(read_seed_metrics(url, "s").value) == [0.8, 0.9]


def test_attribute_rows_read_back_like_the_tables(tmp_path: Path) -> None:
    url = f"journal:///{tmp_path / 'r.log'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="s/mmoe/retrain")
    for seeds in ([0, 1], [1, 2]):  # seed 1 twice: a retried chunk; the first copy counts
        trial = study.ask()
        res, met = seed_rows("s", "mmoe", 3, [(s, result(s, 0.5 + s / 10)) for s in seeds], 2)
        trial.set_user_attr(SEED_RESULTS_ATTR, as_attribute(res, met))
        study.tell(trial, 0.0)
    df = read_seed_results(url, "s")
    assert sorted(df.seed) == [0, 1, 2]
    metrics = read_seed_metrics(url, "s")
    assert len(metrics) == 3 and sorted(metrics.value) == [0.5, 0.6, 0.7]
    assert list(df.columns) == [c.name for c in SEED_RESULTS.columns]
