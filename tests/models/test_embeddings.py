"""Sparse fields through embedding tables: the fused first layer against a plain float64 reference, vectorised
replicas against lone runs, gradients only where a value was read, and what the budget and counts include."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hpo.data.recsys import RecsysConfig, make_recsys
from hpo.errors import ConfigError
from hpo.models import TaskSpec, create_model, list_models
from hpo.models._layers import InputLayer, Part
from hpo.schema import DEFAULT_FIELD_DIM, Features, InputSpec, SparseField
from hpo.training import TrainConfig, train

F64 = torch.float64
SPEC = InputSpec(
    3,
    (4, 5),
    (
        SparseField("user", 30),
        SparseField("tags", 12, slots=3, pooling="mean"),
        SparseField("item", 20, dim=4),
        SparseField("genres", 7, slots=2, pooling="sum", dim=4),
    ),
)
TASKS = [TaskSpec("a"), TaskSpec("b", "regression")]


def batch(n: int = 9, seed: int = 0) -> Features:
    g = torch.Generator().manual_seed(seed)
    cont = torch.randn(1, n, 3, generator=g, dtype=F64)
    cols = [
        torch.randint(0, 4, (1, n, 1), generator=g),
        torch.randint(4, 9, (1, n, 1), generator=g),
        torch.randint(0, 30, (1, n, 1), generator=g),
        torch.randint(-1, 12, (1, n, 3), generator=g),  # -1: an empty slot
        torch.randint(0, 20, (1, n, 1), generator=g),
        torch.randint(-1, 7, (1, n, 2), generator=g),
    ]
    cat = torch.cat(cols, dim=-1)
    cat[0, 0, 5:8] = -1  # a row whose tag list is empty: a mean over nothing is zero
    return Features(cont, cat)


def reference_embeddings(layer: InputLayer, x: Features, r: int) -> torch.Tensor:
    """Each field's pooled embedding by plain loops over rows and slots, in ``layer.embeddings.order``."""
    assert layer.embeddings is not None and x.cat is not None
    spec = layer.spec
    tables: dict[int, torch.Tensor] = {}
    for group in layer.embeddings.groups:
        base = 0
        for i in (i for i in layer.embeddings.order if spec.sparse[i].width == group.width):
            tables[i] = group.table[r, base : base + spec.sparse[i].vocab]
            base += spec.sparse[i].vocab
    starts = [spec.n_categorical]
    for f in spec.sparse:
        starts.append(starts[-1] + f.slots)
    rows = []
    for n in range(x.cat.shape[1]):
        parts = []
        for i in layer.embeddings.order:
            f = spec.sparse[i]
            codes = [int(c) for c in x.cat[0, n, starts[i] : starts[i] + f.slots] if c >= 0]
            total = sum((tables[i][c] for c in codes), torch.zeros(f.width, dtype=F64))
            parts.append(total / len(codes) if f.pooling == "mean" and codes else total)
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def test_fused_first_layer_equals_the_plain_reference_in_float64() -> None:
    spec = SPEC.with_field_dim(6)
    layer = InputLayer(spec, {"x": Part(2, 5)}, 2, dtype=F64)
    layer.reset_parameters([torch.Generator().manual_seed(s) for s in (1, 2)])
    x = batch()
    out = layer.project(x)
    for r in range(2):
        emb = reference_embeddings(layer, x, r)
        dense = torch.cat([x.one_hot(spec, F64)[0], emb], dim=1)
        expected = dense @ layer.dense_weight()[r] + layer.bias[r]  # type: ignore[index]
        torch.testing.assert_close(out[r], expected, rtol=1e-12, atol=1e-12)
    assert spec.dense_width == 3 + 9 + 6 + 6 + 4 + 4


def test_only_the_rows_read_get_a_gradient() -> None:
    model = create_model("mmoe", SPEC, TASKS, replicas=2, seeds=[0, 1], dtype=F64, n_experts=2, field_dim=3)
    x = batch()
    model(x).sum().backward()
    assert x.cat is not None
    layer = model.input  # type: ignore[attr-defined]
    spec = layer.spec
    for group in layer.embeddings.groups:
        grad = group.table.grad
        assert grad is not None
        used = torch.zeros(group.rows, dtype=torch.bool)
        base = 0
        for i in (i for i in layer.embeddings.order if spec.sparse[i].width == group.width):
            start = spec.n_categorical + sum(f.slots for f in spec.sparse[:i])
            codes = x.cat[0, :, start : start + spec.sparse[i].slots]
            used[codes[codes >= 0] + base] = True
            base += spec.sparse[i].vocab
        assert (grad[:, ~used] == 0).all()  # never read, never moved (an empty slot reads nothing)
        assert (grad[:, used].abs().sum(-1) > 0).all()


def test_vectorised_replicas_with_embeddings_equal_lone_runs() -> None:
    """After a few hundred optimiser steps on a log whose user and item IDs are sparse fields, replica r of a
    vectorised run equals a lone run with seed r, tables included."""
    ds = make_recsys(
        RecsysConfig(n_users=300, n_items=200, sparse="ids", n_train=1500, n_valid=300, n_test=300)
    )
    f64 = {k: dataclasses.replace(v, cont=v.cont.to(F64)) for k, v in ds.splits.items()}
    ds = dataclasses.replace(ds, splits=f64)
    cfg = TrainConfig(lr=3e-3, batch_size=64, epochs=3, patience=None, device="cpu")
    kw = {"n_experts": 2, "expert_units": (8,), "tower_units": (4,), "field_dim": 5}
    seeds = [3, 4]
    many = create_model("mmoe", ds.spec, ds.tasks, replicas=2, seeds=seeds, dtype=F64, **kw)
    res = train(many, ds, cfg, init_seeds=seeds, data_seeds=seeds)
    assert res[0].steps == 3 * 24
    for r, s in enumerate(seeds):
        lone = create_model("mmoe", ds.spec, ds.tasks, replicas=1, seeds=[s], dtype=F64, **kw)
        (lres,) = train(lone, ds, cfg, init_seeds=[s], data_seeds=[s])
        for (name, p), q in zip(many.named_parameters(), lone.parameters(), strict=True):
            torch.testing.assert_close(p[r], q[0], rtol=1e-9, atol=1e-10, msg=name)
        assert res[r].metric("test", "click", "auc") == pytest.approx(
            lres.metric("test", "click", "auc"), rel=1e-9
        )


@pytest.mark.parametrize("name", [m.name for m in list_models() if m.origin == "built-in"])
def test_every_architecture_reads_sparse_fields(name: str) -> None:
    """Every built-in architecture takes sparse fields through the shared input layer; the tables count as
    parameters, not hidden units: the units per layer are those of the same model on the one-hot columns."""
    spec = SPEC.with_field_dim(4)
    model = create_model(name, spec, TASKS, replicas=2, seeds=[0, 1], dtype=F64)
    out = model(batch())
    assert out.shape == (2, 9, 2) and torch.isfinite(out).all()
    plain = create_model(name, InputSpec(3, (4, 5)), TASKS, dtype=F64)
    assert [u.units for u in model.layer_units()] == [u.units for u in plain.layer_units()]
    table_values = sum(f.vocab * f.width for f in spec.sparse)
    assert model.parameter_count() >= plain.parameter_count() + table_values


def test_field_dim_sets_every_field_without_its_own_width() -> None:
    model = create_model("shared_bottom", SPEC, TASKS, field_dim=11)
    widths = {g.width: g.table.shape[1] for g in model.input.embeddings.groups}  # type: ignore[attr-defined]
    assert widths == {11: 30 + 12, 4: 20 + 7}  # user and tags take field_dim; item and genres keep 4
    default = create_model("shared_bottom", SPEC, TASKS)
    assert {g.width for g in default.input.embeddings.groups} == {DEFAULT_FIELD_DIM, 4}  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="field_dim must be a positive integer, got 0"):
        create_model("shared_bottom", SPEC, TASKS, field_dim=0)
