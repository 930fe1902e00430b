"""The search spaces, studies and examples that ship with hpo, found wherever hpo is installed.

In a checkout (or an editable install) they are the repository's own ``search_spaces/``, ``studies/`` and
``examples/`` folders, the files users edit; an installed wheel carries copies of the same folders as package data
under ``hpo/shipped/`` (``setup.py`` puts them there at build time). Either way :func:`shipped_root` is the folder
that holds the three, so a study outside the repository can name an architecture without a space of its own and
``hpo init`` can copy a starting point.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["FOLDERS", "shipped_root", "shipped_space"]

FOLDERS = ("search_spaces", "studies", "examples")


def shipped_root() -> Path | None:
    """The folder holding the shipped ``search_spaces/``, ``studies/`` and ``examples/``: the package data of an
    installed wheel, else the checkout this package was imported from; None if neither has them."""
    packaged = Path(str(resources.files("hpo"))) / "shipped"
    if (packaged / "search_spaces").is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "search_spaces").is_dir() else None


def shipped_space(architecture: str, size: str = "full") -> Path | None:
    """The shipped search space of a built-in architecture: ``full`` (the 2048-unit budget) or ``small`` (at most
    256 units per layer, for a CPU session); None when hpo ships none for it (a plugin's)."""
    root = shipped_root()
    if root is None:
        return None
    path = root / "search_spaces" / ("small" if size == "small" else "") / f"{architecture}.yaml"
    return path if path.is_file() else None
