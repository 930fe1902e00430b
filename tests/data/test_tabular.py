"""Batch gathering of a split: one ``index_select`` must return exactly the rows advanced indexing returns."""

from __future__ import annotations

import torch

from hpo.data import Split


def _split(replicas: int | None, n: int = 50) -> Split:
    g = torch.Generator().manual_seed(0)
    lead = () if replicas is None else (replicas,)
    return Split(
        torch.randn(*lead, n, 3, generator=g),
        torch.randint(0, 9, (*lead, n, 4), generator=g),
        torch.randint(0, 2, (*lead, n, 2), generator=g).float(),
    )


def test_unreplicated_gather_equals_indexing() -> None:
    s = _split(None)
    idx = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    f = s.features(idx)
    assert f.cont is not None and f.cat is not None
    assert torch.equal(f.cont, s.cont[idx]) and torch.equal(f.cat, s.cat[idx])
    assert torch.equal(s.labels(idx), s.y[idx])


def test_replicated_gather_takes_each_replicas_own_rows() -> None:
    s = _split(3)
    idx = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(2))
    r = torch.arange(3).unsqueeze(1)
    f = s.features(idx)
    assert f.cont is not None and f.cat is not None
    assert torch.equal(f.cont, s.cont[r, idx]) and torch.equal(f.cat, s.cat[r, idx])
    assert torch.equal(s.labels(idx), s.y[r, idx])


def test_replicated_gather_from_a_slice_of_rows() -> None:
    s = _split(2).rows(10, 30)  # a strided view: gathered without flattening (which would copy the split)
    assert not s.cat.is_contiguous()
    idx = torch.randint(0, 20, (2, 5), generator=torch.Generator().manual_seed(3))
    r = torch.arange(2).unsqueeze(1)
    f = s.features(idx)
    assert f.cat is not None and torch.equal(f.cat, s.cat[r, idx])
    assert torch.equal(s.labels(idx), s.y[r, idx])
