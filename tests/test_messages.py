"""Messages a person reads once: the metric and its direction, hints that repeat the options given, tables that
fit 80 columns without cutting names, nothing empty written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import main
from tests.search.conftest import make_study


def test_run_status_and_retrain_name_the_metric_and_keep_the_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_study(tmp_path, trials=2, retrain={"seeds": 2})
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    # the smoke study's objective: the first task's validation MSE (regression), lower is better
    lines = [line for line in out.splitlines() if ": best " in line]
    assert len(lines) == 2 and all("MSE" in line and "(lower is better; trial" in line for line in lines), out
    assert main(["status", "--storage", url]) == 0
    assert "(lower is better; trial" in capsys.readouterr().out
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu"]) == 0
    assert f"next: hpo report {path} --storage {url}" in capsys.readouterr().out
    out_html = tmp_path / "r" / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out_html)]) == 0
    written = list(out_html.parent.glob("r_*.csv"))
    assert written and all(p.stat().st_size > 1 for p in written)  # a section with nothing writes no CSV
    assert not (out_html.parent / "r_default_vs_tuned.csv").exists()  # no default retrain: nothing to write


def test_models_table_keeps_every_name_whole_at_80_columns() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run(
        [sys.executable, "-m", "hpo.cli", "models"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "…" not in out
    for name in ("tensor_factorization", "l2_constrained", "shared_bottom", "cross_stitch"):
        assert name in out, name
    assert max(len(line) for line in out.splitlines()) <= 80
