"""Logging for the command line: every module logs to ``logging.getLogger(__name__)``; this sets where it goes.

On a terminal, records are plain lines (the live progress display is the main view); otherwise (a SLURM job, a
Kubernetes pod, a pipe) each record is one JSON object per line, so a log collector can parse worker events:
``{"time": ..., "level": "INFO", "logger": "hpo.search.worker", "message": ..., "pid": ...}``. The level comes from
``--log-level`` or ``$HPO_LOG_LEVEL`` (default ``warning``; ``info`` shows worker and trial events).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings

__all__ = ["LEVELS", "JsonLines", "configure", "duration"]

LEVELS = ("debug", "info", "warning", "error")


class JsonLines(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out)


def configure(level: str | None = None) -> None:
    """Route hpo's and Optuna's records to stderr at ``level``; called once by the CLI, never on import."""
    import optuna

    name = (level or os.environ.get("HPO_LOG_LEVEL") or "warning").lower()
    numeric = getattr(logging, name.upper(), logging.WARNING)
    os.environ["HPO_LOG_LEVEL"] = name  # worker processes started from here log alike
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    else:
        handler.setFormatter(JsonLines())
    root = logging.getLogger("hpo")
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    root.propagate = False
    # Optuna's per-trial info lines duplicate hpo's progress; its warnings stay visible, in the same format
    optuna.logging.disable_default_handler()
    optuna_root = logging.getLogger("optuna")
    optuna_root.handlers[:] = [handler]
    optuna_root.setLevel(max(numeric, logging.WARNING))
    # heartbeats and metric names are experimental in Optuna 5 and the documented way to do what hpo needs
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def duration(seconds: float) -> str:
    """A time for people, in the unit that keeps it short and exact enough to plan by: ``95 s``, ``27.1 min``,
    ``10.7 h`` (the command line's estimates and the report's say it alike)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
