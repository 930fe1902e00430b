"""Seed results: written once per seed, read back the same from SQL tables and from trial attributes."""

from __future__ import annotations

from pathlib import Path

import optuna

from hpo.storage.engine import engine_for, open_storage
from hpo.storage.results import (
    SEED_RESULTS_ATTR,
    as_attribute,
    curve_rows,
    read_seed_curves,
    read_seed_metrics,
    read_seed_results,
    seed_rows,
    write_seed_results,
)
from hpo.storage.tables import SEED_CURVES, SEED_RESULTS, has_table
from hpo.training import TrainResult


def result(seed: int, auc: float) -> TrainResult:
    curve = [  # two epochs of two steps, as the trainer records them
        {"epoch": e, "step": 2 * e, "train_loss": 1.0, "valid": auc, "train_loss.t": seed + e / 10,
         "valid_loss.t": seed - e / 10}
        for e in (1, 2)
    ]  # fmt: skip
    return TrainResult(
        metrics={"test": {"t": {"auc": auc}}}, curve=curve, best_epoch=1, best_value=auc, metric_name="t.auc",
        epochs_run=2, steps=4, wall_time=0.5, device="cpu", parameter_count=10, init_seed=seed, data_seed=seed + 1,
    )  # fmt: skip


def expected_curves(seeds: list[int]) -> list[tuple[int, int, str, int, float]]:
    """(seed, epoch, split, step, loss) of :func:`result`'s curves, sorted."""
    return sorted(
        (s, e, split, 2 * e, s + e / 10 if split == "train" else s - e / 10)
        for s in seeds
        for e in (1, 2)
        for split in ("train", "valid")
    )


def rows_of(curves: object) -> list[tuple[int, int, str, int, float]]:
    import pandas as pd

    assert isinstance(curves, pd.DataFrame) and set(curves.task) == {"t"}
    return sorted(
        (int(r.seed), int(r.epoch), str(r.split), int(r.step), float(r.loss)) for r in curves.itertuples()
    )


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


def test_loss_curves_are_stored_per_epoch_split_and_task_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    open_storage(url)
    assert read_seed_curves(url, "s").empty
    rows = [(0, result(0, 0.9)), (1, result(1, 0.8))]
    res, met = seed_rows("s", "mmoe", 3, rows, 2)
    curves = curve_rows("s", "mmoe", rows)
    assert len(curves) == 2 * 2 * 2  # seeds x epochs x splits, one task
    assert write_seed_results(url, res, met, curves) == 2
    assert write_seed_results(url, res, met, curves) == 0  # a retried chunk doubles no point either
    stored = read_seed_curves(url, "s")
    assert list(stored.columns) == [c.name for c in SEED_CURVES.columns] and len(stored) == 8
    assert rows_of(stored) == expected_curves([0, 1])


def test_attribute_rows_read_back_like_the_tables(tmp_path: Path) -> None:
    url = f"journal:///{tmp_path / 'r.log'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="s/mmoe/retrain")
    for seeds in ([0, 1], [1, 2]):  # seed 1 twice: a retried chunk; the first copy counts
        trial = study.ask()
        rows = [(s, result(s, 0.5 + s / 10)) for s in seeds]
        res, met = seed_rows("s", "mmoe", 3, rows, 2)
        trial.set_user_attr(SEED_RESULTS_ATTR, as_attribute(res, met, curve_rows("s", "mmoe", rows)))
        study.tell(trial, 0.0)
    df = read_seed_results(url, "s")
    assert sorted(df.seed) == [0, 1, 2]
    metrics = read_seed_metrics(url, "s")
    assert len(metrics) == 3 and sorted(metrics.value) == [0.5, 0.6, 0.7]
    assert list(df.columns) == [c.name for c in SEED_RESULTS.columns]
    curves = read_seed_curves(url, "s")
    assert list(curves.columns) == [c.name for c in SEED_CURVES.columns] and set(curves.architecture) == {
        "mmoe"
    }
    assert rows_of(curves) == expected_curves([0, 1, 2])  # seed 1's curve once, as its results
