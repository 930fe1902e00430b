"""A run stopped between epochs and started again from its checkpoint ends exactly as a run never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo.models import create_model
from hpo.training import TrainConfig, train
from hpo.training.checkpoint import Checkpoint, fingerprint
from tests.training.test_trainer import binary_data

SEEDS = [3, 4, 5]
CFG = TrainConfig(lr=3e-3, batch_size=64, epochs=15, patience=2, device="cpu", loss_weighting="gradnorm")


def _model(arch: str):  # type: ignore[no-untyped-def]
    ds = binary_data()
    hyper = {"mmoe": {"n_experts": 3, "expert_units": (16,), "tower_units": (8,)}}.get(arch, {})
    return ds, create_model(arch, ds.spec, ds.tasks, replicas=len(SEEDS), seeds=SEEDS, **hyper)


class Stop(Exception):
    pass


@pytest.mark.parametrize("arch", ["shared_bottom", "mmoe"])
def test_a_run_resumed_from_its_checkpoint_ends_as_one_never_stopped(tmp_path: Path, arch: str) -> None:
    """Three seeds with early stopping and GradNorm (state beyond the weights): the straight run; then one stopped
    after an epoch at which a seed had already stopped (so the checkpoint holds a compacted model), and its
    restart from the checkpoint. Metrics, curves, best epochs and final weights agree to the bit."""
    cfg = CFG
    ds, model = _model(arch)
    straight = train(model, ds, cfg, init_seeds=SEEDS)
    ran = sorted(r.epochs_run for r in straight)
    assert ran[0] < ran[-1] - 1, ran  # a seed stops early, the others go on: the compacted state is tested
    stop_at = ran[0] + 1

    def stop(rep) -> None:  # type: ignore[no-untyped-def]
        if rep.epoch == stop_at:
            raise Stop

    ckpt = tmp_path / "c.pt"
    _, first = _model(arch)
    with pytest.raises(Stop):
        train(first, ds, cfg, init_seeds=SEEDS, callback=stop, checkpoint=Checkpoint(ckpt, "k", every=0))
    assert ckpt.exists()
    _, again = _model(arch)
    resumed_ckpt = Checkpoint(ckpt, "k", every=0)
    epochs: list[int] = []
    resumed = train(
        again, ds, cfg, init_seeds=SEEDS, checkpoint=resumed_ckpt, callback=lambda r: epochs.append(r.epoch)
    )
    assert resumed_ckpt.resumed_epoch == stop_at and epochs[0] == stop_at + 1  # no epoch trained twice
    for a, b in zip(straight, resumed, strict=True):
        assert a.metrics == b.metrics and a.curve == b.curve
        assert (a.best_epoch, a.epochs_run, a.steps, a.status) == (
            b.best_epoch,
            b.epochs_run,
            b.steps,
            b.status,
        )
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.slow  # compiles a model three times
def test_a_compiled_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """With ``compile: true`` a resumed run compiles afresh (as a new process does), so its kernels, and with them
    the last bits of its floats, may differ from a run never stopped: the same epochs, metrics to rounding."""
    cfg = CFG.model_copy(
        update={"compile": True, "epochs": 4, "patience": None, "loss_weighting": "uncertainty"}
    )
    ds, model = _model("mmoe")
    torch._dynamo.reset()
    straight = train(model, ds, cfg, init_seeds=SEEDS)

    def stop(rep) -> None:  # type: ignore[no-untyped-def]
        if rep.epoch == 2:
            raise Stop

    path = tmp_path / "c.pt"
    torch._dynamo.reset()
    with pytest.raises(Stop):
        train(
            _model("mmoe")[1],
            ds,
            cfg,
            init_seeds=SEEDS,
            callback=stop,
            checkpoint=Checkpoint(path, "k", every=0),
        )
    torch._dynamo.reset()
    ckpt = Checkpoint(path, "k", every=0)
    resumed = train(_model("mmoe")[1], ds, cfg, init_seeds=SEEDS, checkpoint=ckpt)
    assert ckpt.resumed_epoch == 2
    for a, b in zip(straight, resumed, strict=True):
        assert b.epochs_run == a.epochs_run == 4 and b.status == "ok"
        for task in ("a", "b"):
            assert b.metric("test", task, "auc") == pytest.approx(a.metric("test", task, "auc"), abs=1e-3)


def test_a_checkpoint_of_other_work_or_a_damaged_one_is_ignored(tmp_path: Path) -> None:
    ds, model = _model("shared_bottom")
    cfg = CFG.model_copy(update={"epochs": 3, "patience": None})
    path = tmp_path / "c.pt"
    Checkpoint(path, "other", every=0).save(2, lambda: {"anything": 1}, force=True)
    ckpt = Checkpoint(path, fingerprint(arch="shared_bottom", seeds=SEEDS), every=0)
    straight = train(model, ds, cfg, init_seeds=SEEDS, checkpoint=ckpt)
    assert ckpt.resumed_epoch == 0
    path.write_bytes(b"not a checkpoint")
    _, again = _model("shared_bottom")
    damaged = Checkpoint(path, "k", every=0)
    assert [r.metrics for r in train(again, ds, cfg, init_seeds=SEEDS, checkpoint=damaged)] == [
        r.metrics for r in straight
    ]
    assert damaged.resumed_epoch == 0
    damaged.clear()
    assert not path.exists()


def test_a_state_is_written_at_most_every_interval(tmp_path: Path) -> None:
    ckpt = Checkpoint(tmp_path / "c.pt", "k", every=3600)
    assert not ckpt.save(1, lambda: {})  # just made: the interval has not passed
    assert ckpt.save(1, lambda: {}, force=True) and ckpt.load() == {"key": "k", "epoch": 1}
    assert fingerprint(a=1, b=[2]) == fingerprint(b=[2], a=1) != fingerprint(a=2, b=[2])


def test_a_checkpoint_that_cannot_be_written_never_stops_training(tmp_path: Path) -> None:
    """A full or read-only disk (here: a file where the folder should be) costs the resumption, not the run."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    ds, model = _model("shared_bottom")
    cfg = CFG.model_copy(update={"epochs": 3, "patience": None})
    ckpt = Checkpoint(tmp_path / "blocked" / "c.pt", "k", every=0)
    results = train(model, ds, cfg, init_seeds=SEEDS, checkpoint=ckpt)
    assert ckpt.failed and all(r.status == "ok" and r.epochs_run == 3 for r in results)


def test_a_checkpoint_of_another_model_is_refused_before_anything_changes(tmp_path: Path) -> None:
    """The same key but another model's state (the code changed between the write and the retry): ignored with a
    warning, the run trains from its first epoch and ends as a run without a checkpoint."""
    ds, model = _model("shared_bottom")
    cfg = CFG.model_copy(update={"epochs": 3, "patience": None})
    path = tmp_path / "c.pt"
    _, mmoe = _model("mmoe")
    with pytest.raises(Stop):
        train(
            mmoe, ds, cfg, init_seeds=SEEDS, callback=_stop_at(2), checkpoint=Checkpoint(path, "k", every=0)
        )
    ckpt = Checkpoint(path, "k", every=0)
    resumed = train(model, ds, cfg, init_seeds=SEEDS, checkpoint=ckpt)
    _, fresh = _model("shared_bottom")
    assert ckpt.resumed_epoch == 0
    assert [r.metrics for r in resumed] == [r.metrics for r in train(fresh, ds, cfg, init_seeds=SEEDS)]


def _stop_at(epoch: int):  # type: ignore[no-untyped-def]
    def stop(rep) -> None:  # type: ignore[no-untyped-def]
        if rep.epoch == epoch:
            raise Stop

    return stop
