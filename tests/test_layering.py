"""The package's seams, checked: what each layer may import, no import-time side effects, one-line config errors.

Each import runs in a fresh interpreter, so what one test imported cannot hide what another pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import main
from tests.search.conftest import make_study


def modules_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_loading_data_does_not_import_the_model_zoo() -> None:
    loaded = modules_after("import hpo.data, hpo.data.sources, hpo.data.registry")
    assert "hpo.models.moe" not in loaded and "hpo.models" not in loaded


@pytest.mark.parametrize(
    "module", ["hpo.report", "hpo.report.html", "hpo.report.sweep", "hpo.report.collect"]
)
def test_the_report_reads_storage_and_never_imports_search_or_training(module: str) -> None:
    loaded = modules_after(f"import {module}")
    assert not {m for m in loaded if m.startswith(("hpo.search", "hpo.training"))}


def test_storage_and_config_sit_below_search_and_training() -> None:
    loaded = modules_after(
        "import hpo.storage.engine, hpo.storage.results, hpo.storage.claims, hpo.config.study"
    )
    assert not {m for m in loaded if m.startswith(("hpo.search", "hpo.training", "hpo.report"))}


def test_importing_the_package_changes_nothing_global() -> None:
    # third-party libraries add warning filters of their own on import; hpo must add none, and leave Optuna's
    # verbosity and the logging handlers as they were
    code = (
        "import logging, warnings, optuna\n"
        "state = lambda: (optuna.logging.get_verbosity(), list(logging.getLogger().handlers),\n"
        "    list(logging.getLogger('optuna').handlers), list(logging.getLogger('hpo').handlers))\n"
        "before = state()\n"
        "import hpo.search, hpo.search.runner, hpo.search.retrain, hpo.report.html, hpo.cli\n"
        "assert state() == before, (before, state())\n"
        "mine = [f for f in warnings.filters if f[2] is optuna.exceptions.ExperimentalWarning]\n"
        "assert not mine, mine\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fixed_loss_weights_without_weights_fail_at_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = make_study(tmp_path, training={"epochs": 2, "loss_weighting": "fixed"})
    assert main(["validate", str(study)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training: Value error, loss_weighting 'fixed' needs loss_weights" in err[0], err
    study = make_study(
        tmp_path, training={"epochs": 2, "loss_weighting": "fixed", "loss_weights": [1.0, 0.5]}
    )
    assert main(["validate", str(study), "--samples", "5"]) == 0


def test_log_records_are_json_lines_off_a_terminal(tmp_path: Path) -> None:
    study = make_study(
        tmp_path, trials=1, architectures=["shared_bottom"], training={"epochs": 1, "device": "cpu"}
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo.cli",
            "--log-level",
            "info",
            "run",
            str(study),
            "--storage",
            f"sqlite:///{tmp_path / 'l.db'}",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "hpo.search.runner" and "joined" in r["message"] for r in records), done.stderr
    assert any("trial 0 complete" in r["message"] for r in records), done.stderr
    assert {"time", "level", "logger", "message", "pid"} <= set(records[0])


def test_no_function_in_the_package_is_longer_than_60_lines() -> None:
    import ast

    root = Path(__file__).resolve().parents[1] / "hpo"
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


# What each part of the package may import (besides itself and the base). Imports inside functions count; those
# under ``if TYPE_CHECKING:`` do not (they never run).
BASE = {"hpo", "hpo.errors", "hpo.limits", "hpo.schema", "hpo.yamlio", "hpo.logs", "hpo.estimators"}
MAY_IMPORT = {
    "hpo.models": set(),
    "hpo.data": set(),
    "hpo.weighting": {"hpo.models"},  # loss-weighting strategies: read a model, named by the config
    "hpo.config": {"hpo.models", "hpo.data", "hpo.weighting"},
    "hpo.training": {"hpo.models", "hpo.data", "hpo.config", "hpo.weighting"},
    "hpo.storage": set(),  # needs none of the layers above the base: a new backend touches storage only
    "hpo.report": {"hpo.config", "hpo.storage"},  # reads the storage; never search or training
    "hpo.search": {"hpo.models", "hpo.data", "hpo.config", "hpo.weighting", "hpo.training", "hpo.storage"},
    "hpo.demo": {"hpo.config", "hpo.storage", "hpo.search", "hpo.report"},
}


def _module_graph() -> dict[str, set[str]]:
    """Module -> the hpo modules it imports, read from the source (``from hpo.x import y`` is ``hpo.x.y`` when
    that is a module, else ``hpo.x``)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    files = {}
    for path in sorted((root / "hpo").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str:
        while name not in files:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        skip = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names if a.name.split(".")[0] == "hpo"]
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").split(".")[0] == "hpo"
            ):
                base = node.module or ""
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else resolve(base) for a in node.names
                ]
            else:
                continue
            graph[module] |= {t for t in targets if t != module}
    return graph


def _part(module: str) -> str:
    return module if module in BASE else ".".join(module.split(".")[:2])


def test_no_import_circles() -> None:
    import graphlib

    graph = _module_graph()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_no_import_runs_back_up_the_layers() -> None:
    upward = [
        f"{m} -> {t}"
        for m, targets in sorted(_module_graph().items())
        for t in sorted(targets)
        if _part(m) in MAY_IMPORT
        and _part(t) != _part(m)
        and _part(t) not in BASE
        and _part(t) not in MAY_IMPORT[_part(m)]
    ]
    assert not upward, upward
    parts = {_part(m) for m in _module_graph()}
    assert parts <= BASE | set(MAY_IMPORT) | {"hpo.cli", "hpo.cli_docs"}, (
        "a new part of the package: place it"
    )


STORAGE_KIND = ("is_rdb", "is_sqlite", "sqlite_path", "journal_path", "get_backend_name")
# the one module allowed to reach into Optuna's private code (its docstring says why, piece by piece)
OPTUNA_ADAPTERS = {"hpo/storage/optuna_internals.py"}


def _package_sources() -> dict[str, str]:
    root = Path(__file__).resolve().parents[1]
    return {str(p.relative_to(root)): p.read_text() for p in sorted((root / "hpo").rglob("*.py"))}


def test_only_the_storage_layer_decides_by_the_kind_of_storage() -> None:
    """A new backend is a change to hpo/storage alone: nothing above it asks what kind of storage it has."""
    import re

    found = [
        f"{path}: {name}"
        for path, text in _package_sources().items()
        if not path.startswith("hpo/storage/")
        for name in STORAGE_KIND
        if re.search(rf"\b{name}\b", text)
    ]
    assert not found, found


def test_optuna_internals_are_touched_in_the_adapter_only() -> None:
    """Private Optuna names (``optuna.x._y``, ``._backend``, ``._trial_id``, ``._cached_frozen_trial``, private
    ``RDBStorage`` writers, ``HeartbeatThread``) appear only in the adapter module, whose test pins what it relies
    on, so an Optuna upgrade breaks in one place."""
    import re

    private = re.compile(
        r"optuna(\.\w+)*\._(?!_)\w+|\._backend\b|\._trial_id\b|\._cached_frozen_trial\b|\._storage\b"
        r"|_without_commit\b|\bHeartbeatThread\b|_create_scoped_session\b"
    )
    found = [
        f"{path}: {m.group(0)}"
        for path, text in _package_sources().items()
        if path not in OPTUNA_ADAPTERS
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        for m in [private.search(line)]
        if m is not None
    ]
    assert not found, found
