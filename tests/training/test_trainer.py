from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from hpo.data import SyntheticConfig, TabularDataset, make_synthetic
from hpo.data._tabular import Split
from hpo.errors import ConfigError
from hpo.models import TaskSpec, create_model
from hpo.training import TrainConfig, train, trainer
from hpo.training.trainer import _outputs


def small_synthetic(dtype: torch.dtype = torch.float32, n: int = 600) -> TabularDataset:
    ds = make_synthetic(SyntheticConfig(d=8, p=0.7, n_train=n, n_valid=200, n_test=200, seed=1))
    splits = {k: Split(v.cont.to(dtype), v.cat, v.y.to(dtype)) for k, v in ds.splits.items()}
    return dataclasses.replace(ds, splits=splits)


def binary_data(n: int = 800, seed: int = 0) -> TabularDataset:
    """Census-like: continuous and categorical columns, two binary tasks that depend on both."""
    from hpo.models import InputSpec

    g = torch.Generator().manual_seed(seed)
    spec = InputSpec(3, (4, 6))
    splits = {}
    for name, size in (("train", n), ("valid", 300), ("test", 300)):
        cont = torch.randn(size, 3, generator=g)
        cat = torch.cat(
            [torch.randint(0, 4, (size, 1), generator=g), torch.randint(0, 6, (size, 1), generator=g) + 4], 1
        )
        z1 = cont[:, 0] + (cat[:, 0] == 1).float() * 1.5
        z2 = -cont[:, 1] + (cat[:, 1] == 7).float() * 2.0 + 0.5 * cont[:, 0]
        y = torch.stack(
            [
                (z1 + 0.3 * torch.randn(size, generator=g)) > 0.5,
                (z2 + 0.3 * torch.randn(size, generator=g)) > 0,
            ],
            1,
        )
        splits[name] = Split(cont, cat, y.float())
    return TabularDataset("toy", spec, (TaskSpec("a"), TaskSpec("b")), splits)


CFG = TrainConfig(lr=3e-3, batch_size=64, epochs=4, patience=None, device="cpu")


def run(name: str, ds: TabularDataset, seeds: list[int], cfg: TrainConfig = CFG, dtype=torch.float32, **kw):
    model = create_model(name, ds.spec, ds.tasks, replicas=len(seeds), seeds=seeds, dtype=dtype, **kw)
    return model, train(model, ds, cfg, init_seeds=seeds)


def test_learns_binary_tasks_and_reports_sklearn_metrics() -> None:
    ds = binary_data()
    model, (res,) = run("mmoe", ds, [0], n_experts=3, expert_units=(16,), tower_units=(8,))
    assert (
        res.status == "ok" and res.metric("test", "a", "auc") > 0.8 and res.metric("test", "b", "auc") > 0.8
    )
    out = _outputs(model, ds.splits["test"], 1000)[0].numpy()
    y = ds.splits["test"].y.numpy()
    assert res.metric("test", "a", "auc") == roc_auc_score(
        y[:, 0], 1 / (1 + np.exp(-out[:, 0].astype(np.float64)))
    )
    assert set(res.metrics) == {"train", "valid", "test"}
    assert set(res.metrics["valid"]["a"]) == {"auc", "logloss"}
    assert len(res.curve) == 4 and res.best_epoch >= 1 and res.device == "cpu"
    assert res.parameter_count == model.parameter_count()


def test_regression_metrics() -> None:
    _, (res,) = run("shared_bottom", small_synthetic(), [0], bottom_units=(16,), tower_units=(8,))
    assert set(res.metrics["test"]["y1"]) == {"mse", "r2"}
    assert res.metric_name == "y1.mse"


def test_same_seeds_bit_identical_on_cpu() -> None:
    ds = binary_data()
    m1, r1 = run("ple", ds, [5, 6], n_levels=2, expert_units=(8,), tower_units=(4,))
    m2, r2 = run("ple", ds, [5, 6], n_levels=2, expert_units=(8,), tower_units=(4,))
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    assert [r.metrics for r in r1] == [r.metrics for r in r2]
    assert [r.curve for r in r1] == [r.curve for r in r2]


def test_data_order_seed_is_its_own_axis() -> None:
    ds = binary_data()
    a = create_model("mmoe", ds.spec, ds.tasks, seeds=[1], n_experts=2, expert_units=(4,), tower_units=(4,))
    b = create_model("mmoe", ds.spec, ds.tasks, seeds=[1], n_experts=2, expert_units=(4,), tower_units=(4,))
    (ra,) = train(a, ds, CFG, init_seeds=[1], data_seeds=[10])
    (rb,) = train(b, ds, CFG, init_seeds=[1], data_seeds=[11])
    assert (ra.init_seed, ra.data_seed, rb.data_seed) == (1, 10, 11)
    assert ra.curve != rb.curve


@pytest.mark.parametrize("name", ["mmoe", "ple", "cross_stitch", "l2_constrained", "tensor_factorization"])
def test_vectorised_replicas_equal_separate_runs(name: str) -> None:
    """After a few hundred optimiser steps, replica s of a vectorised run equals a lone run with seed s."""
    ds = small_synthetic(torch.float64, n=2000)
    cfg = TrainConfig(lr=2e-3, batch_size=32, epochs=5, patience=None, device="cpu", grad_clip=1.0)
    kw = {
        "mmoe": {"n_experts": 3, "expert_units": (8,), "tower_units": (4,)},
        "ple": {"n_levels": 2, "n_specific": 1, "n_shared": 2, "expert_units": (8,), "tower_units": (4,)},
        "cross_stitch": {"hidden_units": (8, 6)},
        "l2_constrained": {"hidden_units": (8,), "alpha": 0.01},
        "tensor_factorization": {"hidden_units": (8, 6), "r1": 4, "r2": 4, "r3": 2},
    }[name]
    seeds = [3, 4, 5]
    many, res = run(name, ds, seeds, cfg, torch.float64, **kw)
    assert res[0].steps == 5 * 63  # 315 optimiser steps
    for r, s in enumerate(seeds):
        lone, (lres,) = run(name, ds, [s], cfg, torch.float64, **kw)
        for (pname, p), q in zip(many.named_parameters(), lone.parameters()):
            torch.testing.assert_close(p[r], q[0], rtol=1e-9, atol=1e-10, msg=pname)
        for split in ("valid", "test"):
            for task in ("y1", "y2"):
                assert res[r].metric(split, task, "mse") == pytest.approx(
                    lres.metric(split, task, "mse"), rel=1e-9
                )


def test_replicas_on_their_own_data_equal_separate_runs() -> None:
    """Fresh data per run (the paper's synthetic protocol): replica r of a run on a replicated dataset equals a
    lone run on dataset r, through early stopping and compaction of the finished replicas."""
    sets = [
        make_synthetic(SyntheticConfig(d=8, p=p, n_train=600, n_valid=150, n_test=150, seed=s))
        for p, s in ((0.2, 5), (0.9, 6), (0.5, 7))
    ]
    f64 = torch.float64
    sets = [
        dataclasses.replace(
            d, splits={k: Split(v.cont.to(f64), v.cat, v.y.to(f64)) for k, v in d.splits.items()}
        )
        for d in sets
    ]
    ds = TabularDataset.stack(sets)
    assert ds.replicas == 3 and len(ds.splits["train"]) == 600
    cfg = TrainConfig(lr=0.05, batch_size=50, epochs=40, patience=2, device="cpu")
    kw = {"n_experts": 2, "expert_units": (8,), "tower_units": (4,)}
    seeds = [0, 1, 2]
    _, res = run("omoe", ds, seeds, cfg, f64, **kw)
    for r, s in enumerate(seeds):
        _, (lone,) = run("omoe", sets[r], [s], cfg, f64, **kw)
        assert res[r].epochs_run == lone.epochs_run and res[r].best_epoch == lone.best_epoch
        for split in ("valid", "test"):
            assert res[r].metric(split, "y1", "mse") == pytest.approx(
                lone.metric(split, "y1", "mse"), rel=1e-9
            )
    assert len({r.epochs_run for r in res}) > 1, "early stopping should have compacted the run"
    with pytest.raises(ConfigError, match="3 replicas' data"):
        run("omoe", ds, [0, 1], cfg, f64, **kw)


def test_many_replicas_evaluate_in_cache_sized_chunks_with_the_same_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the CPU, many replicas are evaluated in chunks of at most CPU_EVAL_PAIRS (replica, row) pairs; a lone
    replica keeps its ``eval_batch_size`` chunks. The outputs equal one chunk's up to the last bit: the BLAS
    kernel rounds differently for different row counts (6e-8 on 6% of these outputs, measured)."""
    ds = TabularDataset.stack(
        [make_synthetic(SyntheticConfig(d=8, n_train=50, n_valid=300, n_test=50, seed=s)) for s in range(6)]
    )
    model = create_model("mmoe", ds.spec, ds.tasks, replicas=6, seeds=list(range(6)), n_experts=3)
    whole = _outputs(model, ds.splits["valid"], 10_000)
    monkeypatch.setattr(trainer, "CPU_EVAL_PAIRS", 6 * 70)  # chunks of 70 rows: 5 chunks, the last one short
    assert trainer._eval_chunk(10_000, 6, torch.device("cpu")) == 70
    assert trainer._eval_chunk(10_000, 1, torch.device("cpu")) == 10_000
    assert trainer._eval_chunk(10_000, 6, torch.device("meta")) == 10_000
    chunked = _outputs(model, ds.splits["valid"], 10_000)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(trainer, "CPU_EVAL_PAIRS", 6 * 300)  # one chunk covers the split: exactly the same
    assert torch.equal(_outputs(model, ds.splits["valid"], 10_000), whole)


def test_early_stopping_per_replica_and_compaction() -> None:
    ds = binary_data()
    cfg = TrainConfig(lr=0.05, batch_size=64, epochs=12, patience=2, device="cpu")
    seeds = [0, 1, 2, 3]
    _, res = run("mmoe", ds, seeds, cfg, n_experts=2, expert_units=(8,), tower_units=(4,))
    for r, s in enumerate(seeds):
        _, (lone,) = run("mmoe", ds, [s], cfg, n_experts=2, expert_units=(8,), tower_units=(4,))
        assert res[r].epochs_run == lone.epochs_run
        assert res[r].best_epoch == lone.best_epoch
        assert res[r].metric("test", "a", "auc") == pytest.approx(lone.metric("test", "a", "auc"), abs=1e-5)
    assert len({r.epochs_run for r in res}) > 1 or all(r.epochs_run == 12 for r in res)


def test_curve_holds_each_tasks_training_and_validation_loss_per_epoch() -> None:
    """The loss curve reports draw (loss against steps): per epoch, each task's unweighted loss on the epoch's
    batches and on validation, consistent with the objective and with the final metrics; the same per replica
    whether it trained alone or among others that stopped earlier."""
    ds = binary_data()
    cfg = TrainConfig(lr=0.05, batch_size=64, epochs=6, patience=2, device="cpu")
    _, res = run("mmoe", ds, [0, 1, 2], cfg, n_experts=2, expert_units=(8,), tower_units=(4,))
    steps_per_epoch = -(-800 // 64)
    for r in res:
        assert [p["step"] for p in r.curve] == [steps_per_epoch * e for e in range(1, r.epochs_run + 1)]
        for p in r.curve:
            assert p["train_loss"] == pytest.approx(
                p["train_loss.a"] + p["train_loss.b"], rel=1e-5
            )  # "equal" sums
        best = r.curve[r.best_epoch - 1]
        assert (
            best["valid"] == r.best_value
        )  # the monitor (task a's validation AUC) is kept beside the losses
        for task in ("a", "b"):  # the loss at the best epoch is the restored model's validation log loss
            assert best[f"valid_loss.{task}"] == pytest.approx(r.metric("valid", task, "logloss"), rel=1e-4)
            assert math.isfinite(best[f"train_loss.{task}"])
    _, (lone,) = run("mmoe", ds, [2], cfg, n_experts=2, expert_units=(8,), tower_units=(4,))
    for mine, alone in zip(res[2].curve, lone.curve, strict=True):
        assert mine == pytest.approx(alone, rel=1e-4)


def test_diverging_replica_stops_alone() -> None:
    ds = binary_data()
    model = create_model(
        "mmoe", ds.spec, ds.tasks, replicas=2, seeds=[0, 1], n_experts=2, expert_units=(4,), tower_units=(4,)
    )
    with torch.no_grad():
        model.towers.output.weight[1].fill_(float("nan"))
    res = train(model, ds, CFG, init_seeds=[0, 1])
    assert res[0].status == "ok" and res[0].epochs_run == 4
    assert res[1].status == "diverged" and "non-finite" in res[1].reason and res[1].epochs_run == 1


def test_callback_sees_epochs_and_can_stop_training() -> None:
    ds = binary_data()
    seen = []

    class Stop(Exception):
        pass

    def cb(rep) -> None:
        seen.append((rep.epoch, rep.metric_name, len(rep.valid_metric)))
        if rep.epoch == 2:
            raise Stop

    model = create_model("mmoe", ds.spec, ds.tasks, n_experts=2, expert_units=(4,), tower_units=(4,))
    with pytest.raises(Stop):
        train(model, ds, CFG, callback=cb)
    assert seen == [(1, "a.auc", 1), (2, "a.auc", 1)]


def test_max_steps_caps_training() -> None:
    cfg = TrainConfig(lr=1e-3, batch_size=64, epochs=50, max_steps=20, patience=None, device="cpu")
    _, (res,) = run("shared_bottom", binary_data(), [0], cfg, bottom_units=(8,), tower_units=())
    assert res.steps == 20 and res.epochs_run == 2


@pytest.mark.parametrize("weighting", ["equal", "fixed", "uncertainty", "gradnorm"])
def test_loss_weighting_strategies_train(weighting: str) -> None:
    cfg = TrainConfig(
        lr=5e-3,
        batch_size=64,
        epochs=3,
        patience=None,
        device="cpu",
        loss_weighting=weighting,
        loss_weights=[1.0, 0.0] if weighting == "fixed" else None,
    )
    model, res = run("mmoe", binary_data(), [0, 1], cfg, n_experts=3, expert_units=(8,), tower_units=(4,))
    assert all(r.status == "ok" for r in res)
    if weighting == "fixed":  # task b has weight 0: its tower never moves from its initialisation
        fresh = create_model(
            "mmoe",
            model.spec,
            model.tasks,
            replicas=2,
            seeds=[0, 1],
            n_experts=3,
            expert_units=(8,),
            tower_units=(4,),
        )
        assert torch.equal(model.towers.output.weight[:, 1], fresh.towers.output.weight[:, 1])
        assert not torch.equal(model.towers.output.weight[:, 0], fresh.towers.output.weight[:, 0])


def test_gradnorm_with_early_stopping_compacts_its_state() -> None:
    cfg = TrainConfig(lr=0.05, batch_size=64, epochs=8, patience=1, device="cpu", loss_weighting="gradnorm")
    _, res = run("mmoe", binary_data(), [0, 1, 2], cfg, n_experts=2, expert_units=(8,), tower_units=(4,))
    assert all(r.status == "ok" for r in res)


def test_gradnorm_weights_stay_normalised_and_move() -> None:
    from hpo.weighting import create_weighting

    ds = binary_data()
    model = create_model("shared_bottom", ds.spec, ds.tasks, replicas=2, bottom_units=(8,), tower_units=(4,))
    gn = create_weighting("gradnorm", 2, 2, alpha=1.5)
    losses = torch.tensor([[0.7, 0.6], [0.5, 0.9]], requires_grad=True)
    out = model(ds.splits["train"].features(torch.arange(32).expand(2, -1)))
    real = ((out - 0.5) ** 2).mean(dim=1)  # (R, K) losses that depend on the shared bottom
    gn.combine(real, model)
    assert gn.w.grad is not None and gn.w.grad.shape == (2, 2)
    with torch.no_grad():
        gn.w -= 0.5 * gn.w.grad
    gn.after_step()
    torch.testing.assert_close(gn.w.sum(dim=1), torch.full((2,), 2.0))
    assert losses.shape == (2, 2)


def test_gradnorm_refuses_models_without_shared_parameters() -> None:
    cfg = TrainConfig(epochs=1, device="cpu", loss_weighting="gradnorm")
    with pytest.raises(
        ConfigError, match="gradnorm' needs parameters shared by the tasks; single_task has none"
    ):
        run("single_task", binary_data(), [0], cfg, hidden_units=(4,))


def test_grad_clip_matches_torch_for_a_lone_run() -> None:
    from hpo.training.trainer import _clip_per_replica

    ps = [torch.nn.Parameter(torch.zeros(2, 3, 4)), torch.nn.Parameter(torch.zeros(2, 5))]
    for p in ps:
        p.grad = torch.randn_like(p) * 10
    lone = [torch.nn.Parameter(p.detach()[1:].clone()) for p in ps]
    for p, q in zip(ps, lone):
        q.grad = p.grad[1:].clone()
    _clip_per_replica(ps, 1.5)
    torch.nn.utils.clip_grad_norm_(lone, 1.5)
    for p, q in zip(ps, lone):
        torch.testing.assert_close(p.grad[1:], q.grad)


def test_bad_monitor_and_device_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown task 'zz'"):
        run("mmoe", binary_data(), [0], TrainConfig(early_stopping_metric="zz.auc", device="cpu"))
    with pytest.raises(ConfigError, match="metric must be one of"):
        run("mmoe", binary_data(), [0], TrainConfig(early_stopping_metric="a.mse", device="cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            run("mmoe", binary_data(), [0], TrainConfig(device="cuda:0"))


def test_streamed_rows_train_each_replica_as_alone() -> None:
    """With ``stream: true`` each epoch after the first trains on fresh rows: a run's first epoch equals the fixed
    dataset's, its second does not; vectorised replicas on their own streams equal lone runs."""
    from hpo.data import SyntheticConfig, make_synthetic

    cfgs = [
        SyntheticConfig(p=0.7, d=8, n_train=400, n_valid=100, n_test=100, seed=s, stream=True) for s in (1, 2)
    ]
    cfg = TrainConfig(lr=3e-3, batch_size=64, epochs=3, patience=None, device="cpu")
    kw = {"n_experts": 2, "expert_units": (8,), "tower_units": (4,)}
    _, (fixed,) = run("mmoe", make_synthetic(cfgs[0].model_copy(update={"stream": False})), [0], cfg, **kw)
    _, (alone,) = run("mmoe", make_synthetic(cfgs[0]), [0], cfg, **kw)
    assert alone.curve[0]["train_loss"] == fixed.curve[0]["train_loss"]
    assert alone.curve[1]["train_loss"] != fixed.curve[1]["train_loss"]
    _, together = run("mmoe", TabularDataset.stack([make_synthetic(c) for c in cfgs]), [0, 1], cfg, **kw)
    _, (second,) = run("mmoe", make_synthetic(cfgs[1]), [1], cfg, **kw)
    for mine, lone in ((together[0], alone), (together[1], second)):
        assert [p["train_loss"] for p in mine.curve] == pytest.approx(
            [p["train_loss"] for p in lone.curve], rel=1e-5
        )
