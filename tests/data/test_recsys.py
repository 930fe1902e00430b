"""The recommendation-log generator: its requested rates, its truth, both label layouts, and a study on it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from hpo.cli import main
from hpo.data.recsys import RecsysConfig, make_recsys
from tests.search.conftest import make_study

SMALL = {"n_users": 2000, "n_items": 1000, "n_train": 20_000, "n_valid": 4000, "n_test": 4000}


def test_rates_truth_and_determinism() -> None:
    ds = make_recsys(RecsysConfig(**SMALL, click_rate=0.2, purchase_rate=0.1))
    p = ds.provenance
    assert abs(p["click_rate"] - 0.2) < 0.01 and abs(p["purchase_rate_among_clicks"] - 0.1) < 0.02
    assert 0.6 < p["oracle_test_auc"]["click"] < 1 and 0.6 < p["oracle_test_auc"]["purchase"] < 1
    y = ds.splits["train"].y
    assert ((y[:, 1] == 1) <= (y[:, 0] == 1)).all()  # a purchase only after a click
    again = make_recsys(RecsysConfig(**SMALL, click_rate=0.2, purchase_rate=0.1))
    assert torch.equal(again.splits["test"].cat, ds.splits["test"].cat)
    assert ds.spec.cardinalities == (2000, 1000, 100, 16, 50)


def test_on_click_labels_and_dwell_are_defined_only_after_a_click() -> None:
    ds = make_recsys(RecsysConfig(**SMALL, labels="on_click", dwell=True))
    y = ds.splits["train"].y
    clicked = y[:, 0] == 1
    assert [t.name for t in ds.tasks] == ["click", "conversion", "dwell"]
    assert torch.isnan(y[~clicked, 1:]).all() and not torch.isnan(y[clicked, 1:]).any()


def test_relatedness_moves_how_much_the_click_preference_predicts_purchases() -> None:
    """With relatedness 1 one preference drives both behaviours; with 0 the purchase preference is independent,
    so the true click probability ranks purchases among clicks no better than chance (AUC near 0.5)."""
    from sklearn.metrics import roc_auc_score

    aucs = {}
    for rho in (0.0, 1.0):
        ds = make_recsys(RecsysConfig(**SMALL, relatedness=rho, labels="on_click", seed=3, purchase_rate=0.3))
        y = torch.cat([s.y for s in ds.splits.values()]).numpy()
        # the user and item ids together carry the click preference: per-pair click rate as a ranking score
        clicked = y[:, 0] == 1
        cat = torch.cat([s.cat for s in ds.splits.values()]).numpy()
        key = cat[:, 0] * 10_000_000 + cat[:, 1]
        _, inv = np.unique(key, return_inverse=True)
        rate = np.bincount(inv, weights=y[:, 0]) / np.bincount(inv)
        aucs[rho] = roc_auc_score(y[clicked, 1], rate[inv][clicked])
    assert aucs[1.0] > aucs[0.0] + 0.02, aucs


def test_a_study_on_the_generator_with_esmm_and_aitm(tmp_path: Path) -> None:
    path = make_study(
        tmp_path,
        dataset={
            "kind": "recsys",
            **SMALL,
            "sparse": "ids",
            "n_train": 4000,
            "n_valid": 1000,
            "n_test": 1000,
        },
        architectures=[
            {"name": "esmm", "search_space": "../search_spaces/small/esmm.yaml"},
            {"name": "aitm", "search_space": "../search_spaces/small/aitm.yaml"},
        ],
        trials=2,
        retrain={"seeds": 2},
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    out = tmp_path / "r" / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    import pandas as pd

    comp = pd.read_csv(tmp_path / "r" / "r_comparison.csv")
    assert set(comp.architecture) == {"esmm", "aitm"} and set(comp.task) == {"click", "purchase"}
    assert all(math.isfinite(v) for v in comp["mean"])
    page = out.read_text()  # the provenance names the input path: the IDs went through embedding tables
    assert "2 sparse fields read through embedding tables: user (2000 rows" in page


def test_data_info_prints_sparse_fields_and_each_tasks_rows(capsys) -> None:
    assert (
        main(["data", "info", "recsys", "--sparse", "all", "--labels", "on_click", "--extra-fields", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "0 categorical, 7 sparse (embedded)" in out
    assert (
        "sparse field user: vocabulary 10000 (every value known)" in out and "sparse field item_attr1:" in out
    )
    assert "task conversion (binary)" in out and "defined on a subset of rows: train" in out


def test_data_info_prints_each_fields_vocabulary_and_its_cold_start_rate() -> None:
    from hpo.data.checks import summary_lines

    ds = make_recsys(RecsysConfig(**SMALL))
    fields = {f["name"]: f for f in ds.info()["categorical_fields"]}
    assert fields["user"]["vocabulary"] == 2000 and fields["context"]["unseen_rate"]["test"] == 0.0
    train_users = set(ds.splits["train"].cat[:, 0].tolist())
    unseen = np.mean([u not in train_users for u in ds.splits["test"].cat[:, 0].tolist()])
    assert fields["user"]["unseen_rate"]["test"] == unseen and fields["user"]["seen_in_train"] == len(
        train_users
    )
    assert any(line.strip().startswith("field item: vocabulary 1000") for line in summary_lines(ds.info()))
