"""Fixtures for study tests: a fresh copy of the smoke study (unique name) and the PostgreSQL URL."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def make_study(tmp_path: Path, **overrides: object) -> Path:
    """The smoke study copied beside copies of the search spaces, with a unique name and overrides applied."""
    shutil.copytree(ROOT / "search_spaces", tmp_path / "search_spaces", dirs_exist_ok=True)
    (tmp_path / "studies").mkdir(exist_ok=True)
    spec = yaml.safe_load((ROOT / "studies" / "smoke.yaml").read_text())
    spec["name"] = f"t-{uuid.uuid4().hex[:10]}"
    spec.update(overrides)
    path = tmp_path / "studies" / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
