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


def test_compile_with_gradnorm_is_refused_in_one_line() -> None:
    """GradNorm back-propagates each task's loss through the shared layers before the step's backward; compiled,
    that failed inside torch ("requires create_graph=False and retain_graph=False") or, with donated buffers off,
    trained nothing (the validation metric never moved): the pair is refused with the reason."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'gradnorm' back-propagates .* it needs compile false"):
        TrainConfig(compile=True, loss_weighting="gradnorm")
    assert TrainConfig(compile=True, loss_weighting="uncertainty").compile


def test_compile_is_a_validated_training_option() -> None:
    assert TrainConfig().compile is False
    assert TrainConfig.model_validate({"compile": True}).compile is True
    with pytest.raises(ValueError, match="compile"):
        TrainConfig.model_validate({"compile": "sometimes"})


def _saved_dtypes(forward: object, model: torch.nn.Module, ds: object) -> list[torch.dtype]:
    """The dtypes of the activations the compiled forward saves for its backward."""
    feats = ds.splits["train"].features(torch.arange(64).unsqueeze(0))  # type: ignore[attr-defined]
    out = forward(feats)  # type: ignore[operator]
    stack, seen, found = [out.grad_fn], set(), []
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if type(fn).__name__ == "CompiledFunctionBackward":
            found += [t.dtype for t in fn.saved_tensors]
        stack += [nxt for nxt, _ in fn.next_functions]
    assert found, "no compiled region found behind the output"
    return found


@pytest.mark.parametrize("units", [8, 32])
def test_compiled_step_saves_no_boolean_relu_mask(units: int) -> None:
    """Inductor's vectorised store of a boolean mask is slow on the CPU (bench/PROFILE.md, sixth pass): the
    trainer's compile recomputes views in the backward, so a ReLU's mask is rederived from the saved output
    instead of being written as a boolean tensor. The plain ``torch.compile`` beside it does write one, which is
    what this test guards against."""
    from hpo.models import create_model
    from hpo.training.trainer import _compiled

    ds = binary_data()
    kw = {"n_experts": 2, "expert_units": (units,), "tower_units": (4,)}
    model = create_model("mmoe", ds.spec, ds.tasks, replicas=1, seeds=[0], device="cpu", **kw)
    plain = _saved_dtypes(torch.compile(model), model, ds)
    torch._dynamo.reset()
    ours = _saved_dtypes(_compiled(model), model, ds)
    assert torch.bool in plain, plain
    assert torch.bool not in ours, ours
