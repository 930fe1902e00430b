"""The training engine: a trainer that knows nothing of Optuna, metrics, and loss-weighting strategies."""

from __future__ import annotations

from hpo.config.training import TrainConfig
from hpo.training.trainer import EpochReport, TrainResult, resolve_device, train

__all__ = ["EpochReport", "TrainConfig", "TrainResult", "resolve_device", "train"]
