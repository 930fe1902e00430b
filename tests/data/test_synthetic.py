from __future__ import annotations

import numpy as np
import pytest
import torch

from hpo.data import SyntheticConfig, make_synthetic
from hpo.errors import DataError


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = (
        make_synthetic(SyntheticConfig(seed=3, n_train=50)),
        make_synthetic(SyntheticConfig(seed=3, n_train=50)),
    )
    c = make_synthetic(SyntheticConfig(seed=4, n_train=50))
    assert torch.equal(a.splits["train"].y, b.splits["train"].y)
    assert not torch.equal(a.splits["train"].y, c.splits["train"].y)


@pytest.mark.parametrize("p", [-0.5, 0.0, 0.5, 0.9, 1.0])
def test_weight_cosine_is_p_and_label_correlation_follows(p: float) -> None:
    ds = make_synthetic(SyntheticConfig(p=p, n_train=20_000, m=0, noise=0.0))
    assert ds.provenance["weight_cosine"] == pytest.approx(p, abs=1e-9)
    # without the sine terms and noise the labels are linear in x: their correlation is exactly cos(w1, w2)
    assert ds.provenance["label_pearson"] == pytest.approx(p, abs=0.02)


def test_shapes_and_regression_tasks() -> None:
    ds = make_synthetic(SyntheticConfig(d=12, n_train=30, n_valid=5, n_test=7))
    assert ds.spec.n_continuous == 12 and ds.spec.n_categorical == 0
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [30, 5, 7]
    assert {t.kind for t in ds.tasks} == {"regression"}


def test_correlation_falls_with_p() -> None:
    rs = [
        make_synthetic(SyntheticConfig(p=p, n_train=5000)).provenance["label_pearson"]
        for p in (0.1, 0.5, 0.9)
    ]
    assert np.all(np.diff(rs) > 0)


@pytest.mark.parametrize("kw", [{"p": 1.5}, {"d": 1}, {"noise": -1.0}, {"n_valid": 0}])
def test_bad_settings_are_refused(kw: dict) -> None:
    from hpo.data.registry import load_dataset

    with pytest.raises(DataError, match="synthetic: "):
        load_dataset("synthetic", synthetic=kw)


def test_redrawn_heldout_rows_keep_sizes_rows_and_training_split() -> None:
    """cross.splits' held-out draws: the pooled validation and test rows split again at the same sizes, the
    training rows untouched, seed 0 the dataset's own split, different seeds different splits."""
    import torch

    from hpo.data.synthetic import SyntheticConfig, make_synthetic

    ds = make_synthetic(SyntheticConfig(p=0.5, d=8, n_train=100, n_valid=30, n_test=50, seed=0))
    assert ds.redraw_heldout(0) is ds
    one, two = ds.redraw_heldout(1), ds.redraw_heldout(2)
    assert one.splits["train"] is ds.splits["train"]
    assert (len(one.splits["valid"]), len(one.splits["test"])) == (30, 50)

    def rows(d: object) -> list[tuple[float, ...]]:
        s = d.splits  # type: ignore[attr-defined]
        return sorted(map(tuple, torch.cat([s["valid"].cont, s["test"].cont]).tolist()))

    assert rows(one) == rows(ds)  # the same pooled rows, divided again
    assert not torch.equal(one.splits["valid"].cont, ds.splits["valid"].cont)
    assert not torch.equal(one.splits["valid"].cont, two.splits["valid"].cont)
    assert torch.equal(
        ds.redraw_heldout(1).splits["test"].y, one.splits["test"].y
    )  # a pure function of the seed
