"""The search layer: study specs, search spaces under the budget, storage, workers, status.

Optuna's experimental warnings (heartbeats, metric names) and per-trial info logs are silenced here: the features
are the documented way to do what we need, and our own progress display replaces the logs.
"""

from __future__ import annotations

import warnings

import optuna

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)
