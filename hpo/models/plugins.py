"""Architectures from outside hpo: a study's ``plugins:`` list and installed packages' ``hpo.models`` entry points.

A plugin is a Python file (a path, relative to the study file) or an importable module name; importing it runs
its ``@register_model`` / ``@register_module`` decorators. What it registers records its origin (the file with
its SHA-256, or the module's package and version), which every trial and the report carry, so a comparison says
exactly which code each architecture was. A file is imported once per process, under a module name derived
from its hash, so reloading the same study (a worker, a retrain) is a no-op and two different files never
collide.

Installed packages register through the entry-point group ``hpo.models``; a package that fails to import does
not break hpo, its failure is named when a study asks for a model that is not there.

Every failure is one :class:`ConfigError` line: the file (or module) and the exception's first line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from pathlib import Path

from hpo.errors import ConfigError
from hpo.models import _registry

__all__ = ["entry_point_failures", "load_entry_points", "load_plugins", "plugin_origin"]

GROUP = "hpo.models"
log = logging.getLogger(__name__)

_ENTRY_POINTS: dict[str, str] = {}  # entry point name -> "" (loaded) or its failure
_ENTRY_POINTS_DONE = False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _file_origin(path: Path) -> tuple[str, str]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"plugin file {path} (sha256 {digest[:16]})", f"hpo_plugin_{path.stem}_{digest[:12]}"


def _import_file(path: Path) -> str:
    origin, module_name = _file_origin(path)
    if module_name in sys.modules:
        return origin
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _registry._ORIGIN.append(origin)
    try:
        spec.loader.exec_module(module)
    except ConfigError as exc:
        del sys.modules[module_name]
        raise ConfigError(f"plugin {path}: {exc}") from None
    except Exception as exc:
        del sys.modules[module_name]
        raise ConfigError(f"plugin {path} failed to import: {_first_line(exc)}") from None
    finally:
        _registry._ORIGIN.pop()
    return origin


def _module_origin(name: str) -> str:
    """``plugin module NAME (package DIST VERSION)`` when an installed distribution provides it (known before
    importing it, so that what it registers carries the version)."""
    top = name.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return f"plugin module {name} (package {dist} {importlib.metadata.version(dist)})"
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"plugin module {name} (not from an installed package)"


def _import_module(name: str) -> str:
    origin = _module_origin(name)
    if name in sys.modules:
        return origin
    _registry._ORIGIN.append(origin)
    try:
        importlib.import_module(name)
    except ConfigError as exc:
        raise ConfigError(f"plugin {name}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"plugin {name} failed to import: {_first_line(exc)}") from None
    finally:
        _registry._ORIGIN.pop()
    return origin


def _is_file(item: str) -> bool:
    return item.endswith(".py") or "/" in item


def _path(item: str, base_dir: Path) -> Path:
    path = (base_dir / item).resolve()
    if not path.is_file():
        raise ConfigError(f"plugin {path}: file not found")
    return path


def plugin_origin(item: str, base_dir: Path) -> str:
    """What :func:`load_plugins` would record for ``item`` now, without importing it (a file's current hash)."""
    return _file_origin(_path(item, base_dir))[0] if _is_file(item) else _module_origin(item)


def load_plugins(plugins: list[str], base_dir: Path) -> dict[str, str]:
    """Import each plugin (a ``.py`` path relative to ``base_dir``, or a module name); return plugin -> origin.

    A file is imported once per content (its module is named after its hash): loading it again is a no-op, and
    an edited file is a new plugin whose names clash with the old one's in the same process."""
    return {
        item: _import_file(_path(item, base_dir)) if _is_file(item) else _import_module(item)
        for item in plugins
    }


def load_entry_points() -> None:
    """Import every installed package's ``hpo.models`` entry point, once per process."""
    global _ENTRY_POINTS_DONE
    if _ENTRY_POINTS_DONE:
        return
    _ENTRY_POINTS_DONE = True
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = f"package {ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an installed package"
        _registry._ORIGIN.append(f"entry point {ep.name} ({dist})")
        try:
            ep.load()
            _ENTRY_POINTS[ep.name] = ""
        except Exception as exc:
            _ENTRY_POINTS[ep.name] = f"entry point {ep.name} ({ep.value}) failed to load: {_first_line(exc)}"
            log.warning("%s", _ENTRY_POINTS[ep.name])
        finally:
            _registry._ORIGIN.pop()


def entry_point_failures() -> list[str]:
    return [f for f in _ENTRY_POINTS.values() if f]


def _discover() -> list[str]:
    load_entry_points()
    return entry_point_failures()


_registry._DISCOVER[:] = [
    _discover
]  # every lookup in the registry finds the installed packages' models first
