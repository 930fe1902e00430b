"""GPU paths: run where CUDA is present (the lent GPU machine); CI has no GPU, so they skip there."""

from __future__ import annotations

import pytest
import torch

from hpo.models import create_model, list_models
from hpo.training import TrainConfig, train
from tests.models.test_zoo import DEEP, SPEC, TASKS, features
from tests.training.test_trainer import binary_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("name", [e.name for e in list_models()])
def test_cuda_model_matches_cpu(name: str) -> None:
    cpu = create_model(name, SPEC, TASKS, replicas=2, seeds=[1, 2], dtype=torch.float64, **DEEP[name])
    gpu = create_model(
        name, SPEC, TASKS, replicas=2, seeds=[1, 2], dtype=torch.float64, device="cuda", **DEEP[name]
    )
    x = features(2, 33)
    xg = type(x)(x.cont.cuda(), x.cat.cuda())
    out_c, out_g = cpu(x), gpu(xg)
    torch.testing.assert_close(out_g.cpu(), out_c, rtol=1e-9, atol=1e-10)
    out_c.sum().backward()
    out_g.sum().backward()
    for (n, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-8, atol=1e-10, msg=n)


@pytest.mark.parametrize("amp", [False, True])
def test_cuda_training_with_replicas(amp: bool) -> None:
    ds = binary_data()
    model = create_model(
        "ple", ds.spec, ds.tasks, replicas=3, seeds=[0, 1, 2], n_levels=2, expert_units=(16,)
    )
    cfg = TrainConfig(lr=5e-3, batch_size=64, epochs=4, patience=2, device="cuda", amp=amp)
    res = train(model, ds, cfg, init_seeds=[0, 1, 2])
    assert all(r.status == "ok" and r.device.startswith("cuda") for r in res)
    assert all(r.metric("test", "a", "auc") > 0.75 for r in res)
    assert next(model.parameters()).device.type == "cuda"


def test_cuda_stream_draws_on_the_gpu_and_trains() -> None:
    """``stream: true`` on CUDA: each epoch's rows are drawn on the GPU (no CPU round trip), the same rows for the
    same epoch, and a streamed vectorised retrain runs there."""
    from hpo.data import SyntheticConfig, TabularDataset, make_synthetic

    cfgs = [
        SyntheticConfig(p=0.7, d=16, n_train=512, n_valid=128, n_test=128, seed=s, stream=True)
        for s in (1, 2)
    ]
    ds = TabularDataset.stack([make_synthetic(c) for c in cfgs]).to("cuda")
    rows, again = ds.train_split(3), ds.train_split(3)
    assert rows.cont.is_cuda and rows.y.is_cuda and torch.equal(rows.cont, again.cont)
    assert not torch.equal(rows.cont, ds.train_split(4).cont)
    model = create_model("mmoe", ds.spec, ds.tasks, replicas=2, seeds=[0, 1], n_experts=2, expert_units=(8,))
    res = train(model, ds, TrainConfig(lr=3e-3, batch_size=128, epochs=3, patience=None, device="cuda"))
    assert all(r.status == "ok" and len(r.curve) == 3 for r in res)


def test_cuda_embedding_tables_match_cpu() -> None:
    """Sparse fields on CUDA: the same rows (drawn on the CPU), outputs and gradients as on the CPU, multi-valued
    fields and empty slots included."""
    from tests.models.test_embeddings import SPEC as SPARSE_SPEC
    from tests.models.test_embeddings import TASKS as SPARSE_TASKS
    from tests.models.test_embeddings import batch

    kw = {"replicas": 2, "seeds": [1, 2], "dtype": torch.float64, "field_dim": 3, "n_experts": 3}
    cpu = create_model("mmoe", SPARSE_SPEC, SPARSE_TASKS, **kw)
    gpu = create_model("mmoe", SPARSE_SPEC, SPARSE_TASKS, device="cuda", **kw)
    x = batch()
    xg = type(x)(x.cont.cuda(), x.cat.cuda())
    out_c, out_g = cpu(x), gpu(xg)
    torch.testing.assert_close(out_g.cpu(), out_c, rtol=1e-9, atol=1e-10)
    out_c.sum().backward()
    out_g.sum().backward()
    for (n, p), q in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-8, atol=1e-10, msg=n)


def test_cuda_row_updates_match_cpu() -> None:
    """``embedding_updates: rows`` on CUDA: sparse table gradients and lazy Adam give the CPU's parameters after
    training (float64), on the GPU's own sparse kernels."""
    import dataclasses

    from hpo.data.recsys import RecsysConfig, make_recsys

    ds = make_recsys(
        RecsysConfig(n_users=300, n_items=200, sparse="ids", n_train=1500, n_valid=300, n_test=300)
    )
    ds = dataclasses.replace(
        ds, splits={k: dataclasses.replace(v, cont=v.cont.double()) for k, v in ds.splits.items()}
    )
    kw = {"n_experts": 2, "expert_units": (8,), "tower_units": (4,), "field_dim": 5, "dtype": torch.float64}
    models = {}
    for device in ("cpu", "cuda"):
        cfg = TrainConfig(
            lr=3e-3, batch_size=64, epochs=2, patience=None, device=device, embedding_updates="rows"
        )
        m = create_model("mmoe", ds.spec, ds.tasks, replicas=2, seeds=[3, 4], device=device, **kw)
        train(m, ds, cfg, init_seeds=[3, 4])
        models[device] = m
    for (n, p), q in zip(models["cpu"].named_parameters(), models["cuda"].parameters(), strict=True):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=1e-7, atol=1e-9, msg=n)


def test_cuda_run_resumes_from_its_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A CUDA run stopped after epoch 2 and resumed from its checkpoint (the CUDA generator's state included) ends
    as the run never stopped, up to the GPU's own run-to-run rounding."""
    from hpo.training.checkpoint import Checkpoint

    ds = binary_data()
    cfg = TrainConfig(lr=5e-3, batch_size=64, epochs=4, patience=None, device="cuda")

    def model():  # type: ignore[no-untyped-def]
        return create_model(
            "mmoe", ds.spec, ds.tasks, replicas=2, seeds=[0, 1], n_experts=3, expert_units=(16,)
        )

    straight = train(model(), ds, cfg, init_seeds=[0, 1])

    def stop(rep) -> None:  # type: ignore[no-untyped-def]
        if rep.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            model(),
            ds,
            cfg,
            init_seeds=[0, 1],
            callback=stop,
            checkpoint=Checkpoint(tmp_path / "c.pt", "k", every=0),
        )
    ckpt = Checkpoint(tmp_path / "c.pt", "k", every=0)
    resumed = train(model(), ds, cfg, init_seeds=[0, 1], checkpoint=ckpt)
    assert ckpt.resumed_epoch == 2
    for a, b in zip(straight, resumed, strict=True):
        assert b.metric("test", "a", "auc") == pytest.approx(a.metric("test", "a", "auc"), abs=1e-4)
