"""hpo: tune and compare multi-task learning architectures under one hidden-unit budget."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
