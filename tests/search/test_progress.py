from __future__ import annotations

import io

import optuna
from rich.console import Console

from hpo.config.study import load_study
from hpo.search.progress import StudyProgress
from hpo.storage import keys
from tests.search.conftest import ROOT


def render(p: StudyProgress) -> str:
    buf = io.StringIO()
    Console(file=buf, width=120).print(p._render())
    return buf.getvalue()


def test_counts_best_and_one_live_line_per_worker() -> None:
    spec = load_study(ROOT / "studies" / "smoke.yaml")
    study = optuna.create_study(direction="minimize")
    study.tell(study.ask(), 0.5)
    running = study.ask()
    running.set_user_attr(keys.key("live"), {"worker": 3, "epoch": 2, "metric": "y1.mse", "value": 1.25})
    p = StudyProgress(spec, {"mmoe": study}, 4, quiet=True)
    p.refresh_from_storage()
    assert "1/4" not in render(p) and not p.workers  # not shown, so nothing read from storage
    p.enabled = True  # as on a terminal
    p.refresh_from_storage()
    text = render(p)
    assert "1/4" in text and "0.5000 (#0)" in text
    assert "worker 3" in text and "mmoe trial 1: epoch 2, valid y1.mse 1.2500" in text


def test_quiet_or_not_a_terminal_prints_nothing() -> None:
    spec = load_study(ROOT / "studies" / "smoke.yaml")
    p = StudyProgress(spec, {"mmoe": optuna.create_study()}, 4, quiet=False)
    assert p.enabled is False  # pytest's output is not a terminal
