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
