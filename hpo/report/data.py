"""The report's input: every table and attribute of one study that a report reads, wherever it was read from
(a storage, ``hpo.report.collect``; or an exported folder, ``hpo.report.tables``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hpo.config.study import StudySpec

__all__ = ["ReportData"]


@dataclass
class ReportData:
    spec: StudySpec
    storage: str
    trials: pd.DataFrame
    seed_results: pd.DataFrame
    seed_metrics: pd.DataFrame
    study_attrs: dict[str, dict[str, Any]]
    retrain_attrs: dict[str, dict[str, Any]]
    gate_use: dict[str, pd.DataFrame] = field(default_factory=dict)
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    directions: list[str] = field(default_factory=list)
    metric_names: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    model_origins: dict[str, str] = field(default_factory=dict)
    code_revisions: list[str] = field(default_factory=list)
    kernels: list[str] = field(default_factory=list)  # compiled or fallback (and why), per trial's record
    searched: pd.DataFrame = field(default_factory=pd.DataFrame)
    # every retrained run's loss per (epoch, split, task) with the step it reached (empty for runs retrained
    # before hpo kept curves, and for exports written then)
    seed_curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    # replicated tuning (``replicates``): each replicate's retrain attributes, keyed by (replicate, architecture);
    # the frames above then carry a ``replicate`` column and pool every replicate
    replicate_attrs: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    # and each replicate's tuning study attributes (why its tuning stopped, its bound hits), same keys
    replicate_study_attrs: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    # ``retrain.default``: the default configurations' seeds, and what each default configuration was
    default_results: pd.DataFrame = field(default_factory=pd.DataFrame)
    default_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    default_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # a progress report (``partial``): the (replicate or None, architecture) pairs with no tuning trial yet
    not_started: list[tuple[int | None, str]] = field(default_factory=list)

    @property
    def retrains_by_replicate(self) -> dict[tuple[int, str], dict[str, Any]]:
        """Each retraining's attributes keyed by (replicate, architecture); a study tuned once is replicate 1."""
        return self.replicate_attrs or {(1, a): v for a, v in self.retrain_attrs.items()}

    @property
    def replicates(self) -> int:
        return int(self.trials["replicate"].nunique()) if "replicate" in self.trials else 1
