"""Live progress of a study: one line per architecture (trials done of total, running, pruned, failed, best so
far, and the epoch of the trial in flight). Silent under ``--quiet`` and when output is not a terminal."""

from __future__ import annotations

import math
from typing import Any

import optuna
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hpo.config.study import StudySpec
from hpo.storage import keys
from hpo.training import EpochReport

__all__ = ["StudyProgress"]

S = optuna.trial.TrialState


class StudyProgress:
    def __init__(
        self,
        spec: StudySpec,
        studies: dict[str, optuna.Study],
        total: int | None,
        *,
        quiet: bool,
        title: str | None = None,
    ) -> None:
        self.spec, self.studies, self.total = spec, studies, total
        self.title = title or f"tuning {spec.name}"
        self.console = Console(stderr=True)
        self.enabled = not quiet and self.console.is_terminal
        self.rows: dict[str, dict[str, Any]] = {a: {"epoch": ""} for a in studies}
        self.workers: dict[int, str] = {}
        self.live: Live | None = None
        for arch in studies:
            self._count(arch)

    def add(self, name: str, study: optuna.Study) -> None:
        """A study that joined the run after it began (a retraining queued once its probe finished)."""
        self.studies[name] = study
        self.rows.setdefault(name, {"epoch": ""})
        self._count(name)

    def __enter__(self) -> StudyProgress:
        if self.enabled:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(None, None, None)

    def _count(self, arch: str) -> None:
        """Refresh ``arch``'s row from storage: a read of all its trials, paid only where the table is shown (a
        ``--quiet`` or non-terminal run would read every study once per trial for nothing)."""
        if not self.enabled:
            return
        study = self.studies[arch]
        trials = study.get_trials(deepcopy=False)
        row = self.rows[arch]
        for state in (S.COMPLETE, S.PRUNED, S.FAIL, S.RUNNING, S.WAITING):
            row[state.name] = sum(1 for t in trials if t.state == state)
        complete = [
            t for t in trials if t.state == S.COMPLETE and t.values and all(map(math.isfinite, t.values))
        ]
        if complete and len(study.directions) == 1:
            best = (max if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min)(
                complete, key=lambda t: t.values[0]
            )
            row["best"] = f"{best.values[0]:.4f} (#{best.number})"
        elif complete:
            row["best"] = f"{len(study.best_trials)} on the Pareto front"

    def _table(self) -> Table:
        table = Table(title=self.title, expand=False)
        for col in ("architecture", "done", "running", "pruned", "failed", "best so far", "in flight"):
            table.add_column(col)
        for arch, row in self.rows.items():
            done = row.get("COMPLETE", 0) + row.get("PRUNED", 0)
            n = (
                self.total
                if self.total is not None
                else sum(row.get(k, 0) for k in ("COMPLETE", "PRUNED", "RUNNING", "WAITING"))
            )
            total = f"/{n}"
            table.add_row(
                arch,
                f"{done}{total}",
                str(row.get("RUNNING", 0)),
                str(row.get("PRUNED", 0)),
                str(row.get("FAIL", 0)),
                row.get("best", "-"),
                row.get("epoch", ""),
            )
        return table

    def _render(self) -> Any:
        if not self.workers:
            return self._table()
        from rich.console import Group

        lines = Table(title="workers", expand=False, show_header=False)
        for w in sorted(self.workers):
            lines.add_row(f"worker {w}", self.workers[w])
        return Group(self._table(), lines)

    def _show(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    # hooks called by the worker loop and the trainer
    def trial_started(self, arch: str, trial: optuna.Trial) -> None:
        self.rows[arch]["epoch"] = f"trial {trial.number}: starting"
        self.rows[arch]["RUNNING"] = self.rows[arch].get("RUNNING", 0) + 1
        self._show()

    def on_epoch(self, trial: optuna.Trial, rep: EpochReport) -> None:
        arch = keys.plain(trial.user_attrs).get(keys.ARCHITECTURE, "")
        if arch in self.rows:
            self.rows[arch]["epoch"] = (
                f"trial {trial.number}: epoch {rep.epoch}, valid {rep.metric_name} {rep.valid_metric[0]:.4f}"
            )
            self._show()

    def trial_finished(self, arch: str, study: optuna.Study) -> None:
        self._count(arch)
        self.rows[arch]["epoch"] = ""
        self._show()

    def refresh_from_storage(self) -> None:
        """For worker processes: counts per architecture, and one live line per worker from its running trial."""
        if not self.enabled:
            return
        self.workers = {}
        for arch, study in self.studies.items():
            self._count(arch)
            for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
                live = keys.plain(t.user_attrs).get(keys.LIVE) or {}
                if "worker" in live:
                    value = live.get("value")
                    shown = f", valid {live.get('metric')} {value:.4f}" if isinstance(value, float) else ""
                    self.workers[int(live["worker"])] = (
                        f"{arch} trial {t.number}: epoch {live.get('epoch', 0)}{shown}"
                    )
        self._show()
