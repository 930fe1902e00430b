"""``training.compile``: the training step through ``torch.compile``, close to eager, one graph, replicas cut out."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from hpo.config.training import TrainConfig
from tests.training.test_trainer import binary_data, run

pytestmark = pytest.mark.slow  # each test compiles a model (10-30 s on 2 cores)

KW = {"n_experts": 2, "expert_units": (8,), "tower_units": (4,)}


@pytest.fixture(autouse=True)
def fresh_dynamo() -> None:
    torch._dynamo.reset()
    counters.clear()


def test_compiled_training_matches_eager_to_rounding_in_one_graph() -> None:
    ds = binary_data()
    eager_cfg = TrainConfig(lr=3e-3, batch_size=64, epochs=3, patience=None, device="cpu")
    compiled_cfg = eager_cfg.model_copy(update={"compile": True})
    eager_model, eager = run("mmoe", ds, [0, 1], eager_cfg, **KW)
    compiled_model, compiled = run("mmoe", ds, [0, 1], compiled_cfg, **KW)
    assert counters["graph_break"] == {}, dict(counters["graph_break"])  # the native kernel traced, no breaks
    for a, b in zip(eager, compiled, strict=True):
        assert b.epochs_run == a.epochs_run == 3
        assert b.metric("test", "a", "auc") == pytest.approx(a.metric("test", "a", "auc"), abs=1e-3)
        assert b.metric("test", "b", "auc") == pytest.approx(a.metric("test", "b", "auc"), abs=1e-3)
    for p, q in zip(eager_model.parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4)


def test_compiled_training_survives_replicas_stopping_early() -> None:
    """Early stopping cuts finished replicas out of the model: the compiled step follows the new shapes."""
    ds = binary_data()
    cfg = TrainConfig(lr=0.05, batch_size=64, epochs=12, patience=2, device="cpu", compile=True)
    _, res = run("mmoe", ds, [0, 1, 2, 3], cfg, **KW)
    assert all(r.status == "ok" for r in res)
    assert len({r.epochs_run for r in res}) > 1, "the scenario needs replicas that stop at different epochs"
    assert all(r.metric("test", "a", "auc") > 0.8 for r in res)


def test_compile_is_a_validated_training_option() -> None:
    assert TrainConfig().compile is False
    assert TrainConfig.model_validate({"compile": True}).compile is True
    with pytest.raises(ValueError, match="compile"):
        TrainConfig.model_validate({"compile": "sometimes"})
