"""Loss-weighting strategies: how a step's per-task losses become the one it back-propagates. Each registers
itself by name, and the registry is the one list ``training.loss_weighting`` accepts (the study's config validates
against :func:`weighting_names`), so a new strategy is one short file with ``@register_weighting`` imported here.

A part of its own between the models (it reads a model's shared parameters) and the config (which names it)."""

from __future__ import annotations

from hpo.weighting import gradnorm, simple, uncertainty  # noqa: F401  (registration)
from hpo.weighting._base import (
    LossWeighting,
    create_weighting,
    register_weighting,
    reuses_graph,
    weighting_names,
)

__all__ = ["LossWeighting", "create_weighting", "register_weighting", "reuses_graph", "weighting_names"]
