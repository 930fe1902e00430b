"""``training.amp`` on the CPU: training steps under bf16 autocast, every metric from the float32 weights."""

from __future__ import annotations

import logging

import pytest
import torch
from sklearn.metrics import roc_auc_score

from hpo.data.recsys import RecsysConfig, make_recsys
from hpo.models import create_model, list_models
from hpo.training import TrainConfig, train, trainer
from hpo.training.trainer import _outputs
from tests.training.test_trainer import binary_data

BUILT_IN = [m.name for m in list_models() if m.origin == "built-in"]
CFG = TrainConfig(lr=3e-3, batch_size=64, epochs=2, patience=None, device="cpu")


def _recsys():
    return make_recsys(
        RecsysConfig(n_users=200, n_items=100, sparse="ids", n_train=600, n_valid=200, n_test=200)
    )


@pytest.mark.parametrize("name", BUILT_IN)
def test_amp_trains_every_architecture_in_bf16_and_scores_the_float32_weights(name: str) -> None:
    """On a log with sparse ID fields (embedding tables, conversion on click for ESMM and AITM): the bf16 run
    trains (its weights differ from the float32 run's with the same seeds, which are otherwise bit for bit
    repeatable) and its metrics are those of its float32 weights, not of a bf16 forward."""
    ds = _recsys()
    runs = {}
    for amp in (False, True):
        model = create_model(name, ds.spec, ds.tasks, replicas=2, seeds=[0, 1], field_dim=4)
        res = train(model, ds, CFG.model_copy(update={"amp": amp}), init_seeds=[0, 1])
        runs[amp] = (model, res)
    (m32, _), (m16, r16) = runs[False], runs[True]
    assert all(r.status == "ok" for r in r16)
    weights32 = torch.cat([p.detach().flatten() for p in m32.parameters()])
    weights16 = torch.cat([p.detach().flatten() for p in m16.parameters()])
    assert torch.isfinite(weights16).all() and not torch.equal(weights16, weights32)
    assert all(p.dtype == torch.float32 for p in m16.parameters())  # autocast keeps float32 master weights
    out = _outputs(m16, ds.splits["test"], CFG.eval_batch_size)
    assert out.dtype == torch.float32
    y = ds.splits["test"].y[:, 0].numpy()
    for r in range(2):
        assert r16[r].metric("test", "click", "auc") == pytest.approx(roc_auc_score(y, out[r, :, 0].numpy()))


def test_amp_learns_as_well_as_float32_on_census_like_data() -> None:
    """bf16 steps reach the float32 run's test AUC to within what seeds move it by on this data."""
    ds = binary_data(n=2000)
    cfg = TrainConfig(lr=3e-3, batch_size=64, epochs=6, patience=None, device="cpu")
    auc = {}
    for amp in (False, True):
        model = create_model(
            "mmoe", ds.spec, ds.tasks, replicas=3, seeds=[0, 1, 2], n_experts=3, expert_units=(32,),
            tower_units=(8,),
        )  # fmt: skip
        res = train(model, ds, cfg.model_copy(update={"amp": amp}), init_seeds=[0, 1, 2])
        auc[amp] = [r.metric("test", t, "auc") for r in res for t in ("a", "b")]
    assert min(auc[False]) > 0.9
    assert max(abs(a - b) for a, b in zip(auc[True], auc[False], strict=True)) < 0.01


def test_amp_on_a_cpu_without_bf16_hardware_warns_once_and_keeps_the_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Emulated bf16 is slower than float32; the request is still honoured (a study's results must not depend on
    which machine a worker drew), and said once per process, not once per trial."""
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(trainer, "_WARNED", set())
    ds = binary_data(n=200)
    caplog.set_level(logging.WARNING, logger="hpo.training.trainer")
    results = []
    for _ in range(2):
        model = create_model("shared_bottom", ds.spec, ds.tasks, bottom_units=(8,), tower_units=(4,))
        results.append(train(model, ds, CFG.model_copy(update={"amp": True}))[0])
    warnings = [r.getMessage() for r in caplog.records if "AVX512-BF16" in r.getMessage()]
    assert len(warnings) == 1 and "training.amp: false" in warnings[0]
    assert results[0].metrics == results[1].metrics  # bf16 on the CPU is deterministic too
    assert results[0].config["amp"] is True


def test_the_cpu_probe_reads_pytorchs_own_detection() -> None:
    expected = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert trainer.cpu_has_native_bf16() == expected
