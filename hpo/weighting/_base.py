"""The loss-weighting axis: how per-task losses become one training loss (LibMTL's seam, without its baggage).

A strategy sees the per-task losses of every replica, ``(R, K)``, and returns one loss per replica, ``(R,)``.
Strategies with learnable state keep it as parameters with a leading replica axis; the trainer optimises them
with the model and calls :meth:`after_step` once per step.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from hpo.errors import ConfigError
from hpo.models import MTLModel

__all__ = ["LossWeighting", "create_weighting", "register_weighting", "weighting_names"]

_WEIGHTINGS: dict[str, type[LossWeighting]] = {}


class LossWeighting(nn.Module, metaclass=abc.ABCMeta):
    name: ClassVar[str] = ""
    # True where combine() back-propagates through the model itself before the step's backward (GradNorm's
    # gradient norms), which a torch.compile'd model does not support (TrainConfig refuses the pair)
    reuses_graph: ClassVar[bool] = False

    def __init__(self, n_tasks: int, replicas: int, **options: Any) -> None:
        super().__init__()
        self.n_tasks, self.replicas = n_tasks, replicas

    @abc.abstractmethod
    def combine(self, losses: Tensor, model: MTLModel) -> Tensor:
        """``(R, K)`` per-task losses -> ``(R,)`` losses to back-propagate."""

    def after_step(self) -> None:
        """Hook run after each optimiser step (e.g. to renormalise weights)."""

    def task_weights(self) -> Tensor | None:
        """Current ``(R, K)`` effective weights, for logging; None when they are implicit."""
        return None


def register_weighting(name: str) -> Callable[[type[LossWeighting]], type[LossWeighting]]:
    def deco(cls: type[LossWeighting]) -> type[LossWeighting]:
        cls.name = name
        _WEIGHTINGS[name] = cls
        return cls

    return deco


def reuses_graph(name: str) -> bool:
    """Whether strategy ``name`` back-propagates through the model more than once a step."""
    return _WEIGHTINGS[name].reuses_graph


def weighting_names() -> list[str]:
    """Every registered strategy's name: what ``training.loss_weighting`` accepts."""
    return sorted(_WEIGHTINGS)


def create_weighting(
    name: str, n_tasks: int, replicas: int, *, weights: Sequence[float] | None = None, alpha: float = 1.5
) -> LossWeighting:
    if name not in _WEIGHTINGS:
        raise ConfigError(f"unknown loss_weighting {name!r}; known: {sorted(_WEIGHTINGS)}")
    if weights is not None and len(weights) != n_tasks:
        raise ConfigError(f"loss_weights has {len(weights)} entries for {n_tasks} tasks")
    return _WEIGHTINGS[name](n_tasks, replicas, weights=weights, alpha=alpha)
