from __future__ import annotations

import numpy as np
import pytest
import torch

from hpo.data import SyntheticConfig, TabularDataset, make_synthetic
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


def test_a_stream_draws_fresh_training_rows_each_epoch_from_the_same_generator() -> None:
    """``stream: true``: epoch 1 trains on the dataset's own rows, every later epoch on fresh ones (same task
    weights and sines, so the same regression problem), deterministically; validation and test never change."""
    cfg = SyntheticConfig(p=0.5, d=8, n_train=4000, n_valid=100, n_test=100, seed=3, stream=True)
    ds = make_synthetic(cfg)
    fixed = make_synthetic(cfg.model_copy(update={"stream": False}))
    assert fixed.stream is None and torch.equal(fixed.splits["train"].y, ds.splits["train"].y)
    first, second, again = ds.train_split(1), ds.train_split(2), ds.train_split(2)
    assert first is ds.splits["train"] and not torch.equal(first.cont, second.cont)
    assert torch.equal(second.cont, again.cont) and torch.equal(second.y, again.y)
    assert second.y.shape == first.y.shape

    # the same problem: the label correlation and the linear part's fit carry over to fresh rows
    def corr(s: object) -> float:
        y = s.y.numpy()  # type: ignore[attr-defined]
        return float(np.corrcoef(y[:, 0], y[:, 1])[0, 1])

    assert abs(corr(first) - corr(second)) < 0.05
    w = np.linalg.lstsq(first.cont.numpy(), first.y.numpy(), rcond=None)[0]
    resid = second.y.numpy() - second.cont.numpy() @ w
    assert resid.var() < 0.8 * second.y.numpy().var()


def test_a_stacked_stream_draws_each_replicas_own_rows_and_follows_compaction() -> None:
    cfgs = [SyntheticConfig(d=6, n_train=50, n_valid=20, n_test=20, seed=s, stream=True) for s in (1, 2, 3)]
    stacked = TabularDataset.stack([make_synthetic(c) for c in cfgs])
    rows = stacked.train_split(4)
    assert rows.y.shape[:2] == (3, 50)
    for r, c in enumerate(cfgs):
        alone = make_synthetic(c).train_split(4)
        assert torch.equal(rows.cont[r], alone.cont) and torch.equal(rows.y[r], alone.y)
    kept = stacked.select_replicas([0, 2]).train_split(4)
    assert torch.equal(kept.cont, rows.cont[[0, 2]]) and torch.equal(kept.y, rows.y[[0, 2]])
    # the rows a resumed sweep draws must be the ones its finished runs drew: these numbers come from the revision
    # that ran the committed capacity sweeps (drawn into one tensor per replica, then stacked). The inputs come
    # from the seeded generator alone and are pinned exactly; the targets pass through a float32 matrix product
    # whose summation order follows the CPU's kernels (an AVX-512 EPYC and the machine that pinned them differ in
    # the last bit), so they are pinned to float32 precision: a different draw would differ at the first digit.
    assert rows.cont[2, 7, :3].tolist() == [-1.5128633975982666, -2.50095272064209, -1.0515973567962646]
    assert rows.y[1, 3].tolist() == pytest.approx([0.11095588654279709, -0.7636563181877136], rel=1e-5)
    assert float(rows.cont.double().sum()) == pytest.approx(-35.08169317379361, abs=1e-9)
    assert float(rows.y.double().sum()) == pytest.approx(63.31021393369883, abs=1e-4)
