"""Loss-weighting strategies; each registers itself. Add one as a short file with ``@register_weighting``."""

from __future__ import annotations

from hpo.training.weighting import gradnorm, simple, uncertainty  # noqa: F401  (registration)
from hpo.training.weighting._base import LossWeighting, create_weighting, register_weighting

__all__ = ["LossWeighting", "create_weighting", "register_weighting"]
