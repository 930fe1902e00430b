"""Every study and search space we ship validates (and builds sampled configurations under the budget)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.search.validate import validate_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_study_validates(path: Path) -> None:
    lines = validate_file(path, samples=20)
    assert "ok" in lines[0]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "search_spaces").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_shipped_search_space_validates(path: Path) -> None:
    assert "ok" in validate_file(path, samples=20)[0]
