"""Datasets: UCI Census-income, the MMoE paper's synthetic generator, and users' own tables declared in YAML."""

from __future__ import annotations

from hpo.data._tabular import SPLITS, Split, TabularDataset
from hpo.data.census import fetch_census, load_census
from hpo.data.synthetic import SyntheticConfig, make_synthetic

__all__ = [
    "SPLITS",
    "Split",
    "SyntheticConfig",
    "TabularDataset",
    "fetch_census",
    "load_census",
    "make_synthetic",
]
