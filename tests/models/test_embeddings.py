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
from hpo.training import TrainConfig, TrainResult, train

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
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    layer.reset_parameters(generators)
    # the tables are a submodule of their own, which a model resets in its walk over modules; left unset they
    # would hold whatever memory torch.empty found (NaN in one CI run)
    assert layer.embeddings is not None
    layer.embeddings.reset_parameters(generators)
    assert all(torch.isfinite(t).all() for t in layer.embeddings.tables())
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
    read = read_rows(layer, x)
    for g, group in enumerate(layer.embeddings.groups):
        grad = group.table.grad
        assert grad is not None
        used = read[g]
        assert (grad[:, ~used] == 0).all()  # never read, never moved (an empty slot reads nothing)
        assert (grad[:, used].abs().sum(-1) > 0).all()


def vectorised_against_lone(
    cfg: TrainConfig,
) -> tuple[torch.nn.Module, list[TrainResult], list[torch.Tensor]]:
    """Train a 2-replica MMoE (float64) on a log whose user and item IDs are sparse fields, and check that replica
    r equals a lone run with seed r, tables included; the trained model, its results and its tables at the start."""
    ds = make_recsys(
        RecsysConfig(n_users=300, n_items=200, sparse="ids", n_train=1500, n_valid=300, n_test=300)
    )
    f64 = {k: dataclasses.replace(v, cont=v.cont.to(F64)) for k, v in ds.splits.items()}
    ds = dataclasses.replace(ds, splits=f64)
    kw = {"n_experts": 2, "expert_units": (8,), "tower_units": (4,), "field_dim": 5}
    seeds = [3, 4]
    many = create_model("mmoe", ds.spec, ds.tasks, replicas=2, seeds=seeds, dtype=F64, **kw)
    start = [t.detach().clone() for t in many.input.embeddings.tables()]  # type: ignore[attr-defined]
    res = train(many, ds, cfg, init_seeds=seeds, data_seeds=seeds)
    for r, s in enumerate(seeds):
        lone = create_model("mmoe", ds.spec, ds.tasks, replicas=1, seeds=[s], dtype=F64, **kw)
        (lres,) = train(lone, ds, cfg, init_seeds=[s], data_seeds=[s])
        for (name, p), q in zip(many.named_parameters(), lone.parameters(), strict=True):
            torch.testing.assert_close(p[r], q[0], rtol=1e-9, atol=1e-10, msg=name)
        assert res[r].metric("test", "click", "auc") == pytest.approx(
            lres.metric("test", "click", "auc"), rel=1e-9
        )
    return many, res, start


def test_vectorised_replicas_with_embeddings_equal_lone_runs() -> None:
    """After a few hundred optimiser steps, replica r of a vectorised run equals a lone run with seed r."""
    _, res, _ = vectorised_against_lone(
        TrainConfig(lr=3e-3, batch_size=64, epochs=3, patience=None, device="cpu")
    )
    assert res[0].steps == 3 * 24


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


def read_rows(layer: InputLayer, x: Features) -> dict[int, torch.Tensor]:
    """Per width group, which table rows ``x`` reads (an empty slot reads nothing)."""
    assert layer.embeddings is not None and x.cat is not None
    spec, out = layer.spec, {}
    for g, group in enumerate(layer.embeddings.groups):
        used = torch.zeros(group.rows, dtype=torch.bool)
        base = 0
        for i in (i for i in layer.embeddings.order if spec.sparse[i].width == group.width):
            start = spec.n_categorical + sum(f.slots for f in spec.sparse[:i])
            codes = x.cat[0, :, start : start + spec.sparse[i].slots]
            used[codes[codes >= 0] + base] = True
            base += spec.sparse[i].vocab
        out[g] = used
    return out


def test_row_gradients_are_the_dense_gradient_of_the_rows_read() -> None:
    """``embedding_updates: rows``: the sparse table gradient holds exactly the rows the batch read (no padding
    entry) and, summed, equals the dense gradient; every other parameter's gradient is unchanged."""
    x = batch()
    grads = []
    for rows in (False, True):
        model = create_model(
            "mmoe", SPEC, TASKS, replicas=2, seeds=[0, 1], dtype=F64, n_experts=2, field_dim=3
        )
        model.input.embeddings.use_row_grads(rows)  # type: ignore[attr-defined]
        model(x).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    dense, sparse = grads
    used = read_rows(model.input, x)  # type: ignore[attr-defined]
    for name in dense:
        if not sparse[name].is_sparse:
            torch.testing.assert_close(sparse[name], dense[name], rtol=0, atol=0, msg=name)
            continue
        g = int(name.split(".")[-2])
        rows_in = sparse[name].coalesce().indices()[1].unique()
        assert set(rows_in.tolist()) == set(used[g].nonzero().flatten().tolist()), name
        torch.testing.assert_close(sparse[name].to_dense(), dense[name], rtol=1e-12, atol=1e-14, msg=name)


def _two_steps(rows: bool, batches: list[Features]) -> torch.nn.Module:
    model = create_model("mmoe", SPEC, TASKS, replicas=1, seeds=[5], dtype=F64, n_experts=2, field_dim=3)
    model.input.embeddings.use_row_grads(rows)  # type: ignore[attr-defined]
    tables = set(map(id, model.input.embeddings.tables())) if rows else set()  # type: ignore[attr-defined]
    params = list(model.parameters())
    # epsilon 1e-30: Adam adds it to sqrt(v) after the bias correction, SparseAdam before, so at the default 1e-8
    # they part on elements whose gradient is near 1e-6; at 1e-30 both are Adam's update itself
    dense = [p for p in params if id(p) not in tables]
    opts: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=0.05, eps=1e-30)]
    if rows:
        opts.append(torch.optim.SparseAdam([p for p in params if id(p) in tables], lr=0.05, eps=1e-30))
    for x in batches:
        for o in opts:
            o.zero_grad()
        model(x).sum().backward()
        for o in opts:
            o.step()
    return model


def test_lazy_adam_moves_only_the_rows_a_batch_reads_and_equals_adam_elsewhere() -> None:
    """Two steps, from one initialisation, dense Adam against row updates: every parameter and every table row
    ends equal except the rows only the first batch read: dense
    Adam keeps moving them on its momentum, lazy Adam leaves them where the first step put them."""
    first, second = batch(seed=1), batch(seed=2)
    dense, lazy = _two_steps(False, [first, second]), _two_steps(True, [first, second])
    after_one = _two_steps(True, [first])
    read1, read2 = read_rows(dense.input, first), read_rows(dense.input, second)  # type: ignore[attr-defined]
    for (name, p), q, one in zip(
        dense.named_parameters(), lazy.parameters(), after_one.parameters(), strict=True
    ):
        if not name.endswith("table"):
            torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14, msg=name)
            continue
        g = int(name.split(".")[-2])
        only_first = read1[g] & ~read2[g]
        assert only_first.any() and (read2[g]).any()
        torch.testing.assert_close(q[:, ~only_first], p[:, ~only_first], rtol=1e-12, atol=1e-14, msg=name)
        torch.testing.assert_close(q[:, only_first], one[:, only_first], rtol=0, atol=0, msg=name)
        assert (q[:, only_first] - p[:, only_first]).abs().amax() > 1e-4  # dense Adam moved them on


def test_row_updates_in_training_keep_vectorised_replicas_equal_to_lone_runs() -> None:
    """The trainer with ``embedding_updates: rows`` (and gradient clipping, which reads the sparse gradient per
    replica): replica r of a vectorised run equals a lone run with seed r, tables included; unread rows never
    move."""
    cfg = TrainConfig(
        lr=3e-3, batch_size=64, epochs=3, patience=None, device="cpu", embedding_updates="rows", grad_clip=0.5
    )
    many, _, start = vectorised_against_lone(cfg)
    for t0, t in zip(start, many.input.embeddings.tables(), strict=True):  # type: ignore[attr-defined]
        moved = (t.detach() != t0).any(-1)
        assert moved.any() and not moved.all()  # some rows never read in training stayed put
    bad = {"embedding_updates": "rows", "optimizer": "adamw"}
    with pytest.raises(ValueError, match="needs optimizer adam, weight_decay 0 and compile false"):
        TrainConfig(**bad)  # type: ignore[arg-type]
