"""Reading YAML files and turning pydantic's validation errors into one line: every file hpo reads goes through
here, so every malformed file is reported the same way (``file: field: message; field: message``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpo.errors import ConfigError, HpoError

__all__ = ["format_validation_error", "load_yaml_text", "read_yaml"]


def format_validation_error(source: str, exc: ValidationError) -> str:
    """Every problem of a pydantic validation on one line: ``file: field: message; field: message``."""
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg']}")
    return f"{source}: " + "; ".join(parts)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's plain scalars. Under YAML 1.1's rules, which PyYAML follows, ``on``,
    ``off``, ``yes`` and ``no`` are booleans (a task's ``on: {task: click}`` arrived as the key ``True``), ``109_14``
    is the integer 10914 (an Ali-CCP field ID lost its name) and ``010`` is 8; and ``1e-4`` is text, not a number.
    Here only ``true``/``false`` are booleans, integers are plain decimal digits and floats are YAML 1.2's."""


_REPLACED = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    assert isinstance(node, yaml.ScalarNode)
    return int(str(loader.construct_scalar(node)), 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _decimal)


def load_yaml_text(text: str) -> Any:
    """Parse YAML text with the rules every hpo file is read by (YAML 1.2's plain scalars)."""
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: Path, error: type[HpoError] = ConfigError) -> dict[str, Any]:
    """The mapping at the top of a YAML file; a missing file, bad YAML or another top level raises ``error``."""
    if not path.is_file():
        raise error(f"{path.resolve()}: file not found")
    try:
        data = load_yaml_text(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
