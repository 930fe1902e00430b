"""The names of the attributes hpo stores on Optuna studies and trials: one module, one namespace.

hpo writes every attribute as ``hpo.<name>`` (``hpo.ticket``, ``hpo.metrics``, ...), so its own keys never collide
with a user's or another tool's in the dashboard. Readers go through :func:`plain`, which gives the plain-named
view (``ticket``, ``metrics``) and also accepts the un-namespaced names that databases written before the
namespace hold, so existing databases still open.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PREFIX", "key", "plain", "tag"]

PREFIX = "hpo."


def key(name: str) -> str:
    """The stored name of attribute ``name``."""
    return PREFIX + name


def tag(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every name namespaced, for ``enqueue_trial(user_attrs=...)`` and the like."""
    return {key(k): v for k, v in values.items()}


def plain(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The plain-named view of stored attributes: ``hpo.x`` read as ``x``; a legacy ``x`` where no ``hpo.x``."""
    out = {k: v for k, v in attrs.items() if not k.startswith(PREFIX)}
    out.update({k[len(PREFIX) :]: v for k, v in attrs.items() if k.startswith(PREFIX)})
    return out
