"""One place that turns a dataset name (or a declaration file) and options into a prepared dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hpo.data._tabular import TabularDataset
from hpo.errors import DataError
from hpo.yamlio import format_validation_error

__all__ = ["DATASETS", "load_dataset"]

DATASETS = ("census-income", "synthetic", "recsys")


def load_dataset(
    name: str,
    *,
    group: int = 1,
    data_dir: str | Path | None = None,
    synthetic: dict[str, Any] | None = None,
    recsys: dict[str, Any] | None = None,
    split_seed: int | None = None,
    variant: str = "paper",
    drop: tuple[str, ...] | list[str] = (),
) -> TabularDataset:
    """``census-income`` (with ``group``, ``variant`` and ``drop``), ``synthetic`` or ``recsys`` (with generator
    settings), or a YAML declaration path."""
    if name == "census-income":
        from hpo.data.census import DEFAULT_SPLIT_SEED, load_census

        return load_census(
            group,
            data_dir,
            split_seed=DEFAULT_SPLIT_SEED if split_seed is None else split_seed,
            variant=variant,
            drop=tuple(drop),
        )
    if name in ("synthetic", "recsys"):  # the generators: settings validated into one line naming the dataset
        from hpo.data.recsys import RecsysConfig, make_recsys
        from hpo.data.synthetic import SyntheticConfig, make_synthetic

        config, make, given = {
            "synthetic": (SyntheticConfig, make_synthetic, synthetic),
            "recsys": (RecsysConfig, make_recsys, recsys),
        }[name]
        try:
            cfg = config(**(given or {}))
        except ValidationError as exc:
            raise DataError(format_validation_error(name, exc)) from None
        return make(cfg)  # type: ignore[operator]
    if name.endswith((".yaml", ".yml")):
        from hpo.data.user import load_user_dataset

        return load_user_dataset(name)
    raise DataError(f"unknown dataset {name!r}; use one of {DATASETS} or a dataset YAML file")
