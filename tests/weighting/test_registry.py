"""The weighting registry is the one list of names: the config accepts what is registered, a new strategy needs no
other edit, and an unknown name is refused with the known ones."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor

from hpo.config.training import TrainConfig
from hpo.models import MTLModel
from hpo.weighting import LossWeighting, create_weighting, register_weighting, weighting_names
from hpo.weighting._base import _WEIGHTINGS


def test_config_accepts_every_registered_strategy_and_names_them_when_refusing() -> None:
    assert {"equal", "fixed", "uncertainty", "gradnorm"} <= set(weighting_names())
    for name in weighting_names():
        weights = [1.0, 2.0] if name == "fixed" else None
        assert TrainConfig(loss_weighting=name, loss_weights=weights).loss_weighting == name
    with pytest.raises(
        ValidationError, match="unknown loss_weighting 'magic'; known: equal, fixed, gradnorm"
    ):
        TrainConfig(loss_weighting="magic")


def test_a_new_strategy_is_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hpo.weighting._base._WEIGHTINGS", dict(_WEIGHTINGS))

    @register_weighting("first_only")
    class FirstOnly(LossWeighting):
        def combine(self, losses: Tensor, model: MTLModel) -> Tensor:
            return losses[..., 0]

    cfg = TrainConfig(loss_weighting="first_only")
    w = create_weighting(cfg.loss_weighting, n_tasks=2, replicas=3)
    assert torch.equal(w.combine(torch.tensor([[1.0, 5.0]] * 3), None), torch.ones(3))  # type: ignore[arg-type]
