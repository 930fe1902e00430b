"""Reading YAML files and turning pydantic's validation errors into one line: every file hpo reads goes through
here, so every malformed file is reported the same way (``file: field: message; field: message``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpo.errors import ConfigError, HpoError

__all__ = ["format_validation_error", "read_yaml"]


def format_validation_error(source: str, exc: ValidationError) -> str:
    """Every problem of a pydantic validation on one line: ``file: field: message; field: message``."""
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg']}")
    return f"{source}: " + "; ".join(parts)


def read_yaml(path: Path, error: type[HpoError] = ConfigError) -> dict[str, Any]:
    """The mapping at the top of a YAML file; a missing file, bad YAML or another top level raises ``error``."""
    if not path.is_file():
        raise error(f"{path.resolve()}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
