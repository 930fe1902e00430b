"""The dataset section of a study, owned by the datasets: one discriminated union on ``kind``.

.. code-block:: yaml

    dataset: {kind: census-income, group: 1, variant: paper}          # UCI Census-income (the MMoE paper)
    dataset: {kind: synthetic, p: 0.7, d: 16, n_train: 2000}          # the paper's generator
    dataset: {kind: file, path: my_table.yaml}                        # a dataset YAML, relative to the study
    dataset: {kind: recsys, relatedness: 0.5, labels: entire_space}   # recommendation logs with known answers

Each kind declares only its own settings (a census study has no ``p``), so a misspelled or misplaced key is an
error when the study loads, and the stored spec shows only what applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hpo.data._tabular import TabularDataset
from hpo.data.recsys import RecsysConfig
from hpo.data.synthetic import SyntheticConfig

__all__ = ["CensusSource", "DatasetSource", "FileSource", "load_source"]


class CensusSource(BaseModel):
    """UCI Census-income. ``variant``: ``paper`` drops both groups' label columns (education, marital stat);
    ``leakage-free`` also drops the household and tax-filer columns that spell out marital status; ``drop``
    names more columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["census-income"]
    group: int = Field(1, ge=1, le=2)
    data_dir: str | None = None
    split_seed: int | None = Field(None, ge=0)
    variant: Literal["paper", "leakage-free"] = "paper"
    drop: tuple[str, ...] = ()

    @field_validator("drop")
    @classmethod
    def _known_columns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from hpo.data.census import COLUMNS

        unknown = [c for c in v if c not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown census-income columns {unknown}; allowed: {list(COLUMNS)}")
        return v


class FileSource(BaseModel):
    """A user's table, declared in a dataset YAML (``path`` is relative to the study file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["file"]
    path: str = Field(min_length=1)


DatasetSource = Annotated[
    CensusSource | SyntheticConfig | RecsysConfig | FileSource, Field(discriminator="kind")
]


def load_source(
    source: CensusSource | SyntheticConfig | RecsysConfig | FileSource, base_dir: Path
) -> TabularDataset:
    """The prepared dataset a study's dataset section names."""
    if isinstance(source, FileSource):
        from hpo.data.user import load_user_dataset

        return load_user_dataset(base_dir / source.path)
    if isinstance(source, SyntheticConfig):
        from hpo.data.synthetic import make_synthetic

        return make_synthetic(source)
    if isinstance(source, RecsysConfig):
        from hpo.data.recsys import make_recsys

        return make_recsys(source)
    from hpo.data.census import DEFAULT_SPLIT_SEED, load_census

    split_seed = DEFAULT_SPLIT_SEED if source.split_seed is None else source.split_seed
    return load_census(
        source.group, source.data_dir, split_seed=split_seed, variant=source.variant, drop=source.drop
    )
