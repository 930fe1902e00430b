"""Study specs: each setting declared once, validated once at load, every problem on one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpo.config.study import load_study
from hpo.config.training import TrainConfig
from hpo.data.sources import CensusSource, FileSource
from hpo.data.synthetic import SyntheticConfig
from hpo.errors import ConfigError
from tests.search.conftest import make_study


def test_dataset_section_is_one_union_on_kind(tmp_path: Path) -> None:
    assert isinstance(load_study(make_study(tmp_path)).dataset, SyntheticConfig)
    census = load_study(make_study(tmp_path, dataset={"kind": "census-income", "group": 2}))
    assert isinstance(census.dataset, CensusSource) and census.dataset.group == 2
    assert "p" not in census.resolved()["dataset"]  # the stored spec shows only what applies
    table = load_study(make_study(tmp_path, dataset={"kind": "file", "path": "t.yaml"}))
    assert isinstance(table.dataset, FileSource)


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({"kind": "census-income", "p": 0.5}, "dataset.census-income.p: Extra inputs are not permitted"),
        ({"kind": "parquet"}, "dataset: Input tag 'parquet' found using 'kind' does not match"),
        ({"kind": "file"}, "dataset.file.path: Field required"),
        ({"kind": "synthetic", "p": 3}, "dataset.synthetic.p: Input should be less than or equal to 1"),
        ({"kind": "census-income", "drop": ["nope"]}, "unknown census-income columns ['nope']"),
    ],
)
def test_dataset_mistakes_name_the_field(tmp_path: Path, dataset: dict, message: str) -> None:
    with pytest.raises(
        ConfigError, match=f"{message}".replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
    ):
        load_study(make_study(tmp_path, dataset=dataset))


def test_training_section_is_a_train_config(tmp_path: Path) -> None:
    spec = load_study(make_study(tmp_path, training={"epochs": 2, "momentum": 0.5, "gradnorm_alpha": 1.0}))
    assert isinstance(spec.training, TrainConfig) and spec.training.momentum == 0.5
    with pytest.raises(ConfigError, match="training: Value error, loss_weighting 'fixed' needs loss_weights"):
        load_study(make_study(tmp_path, training={"loss_weighting": "fixed"}))
    with pytest.raises(ConfigError, match="training.epochs: Input should be greater than or equal to 1"):
        load_study(make_study(tmp_path, training={"epochs": 0}))


def test_counts_are_bounded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trials: Input should be less than or equal to 10000"):
        load_study(make_study(tmp_path, trials=100_000_000))
    with pytest.raises(ConfigError, match="retrain.seeds: Input should be less than or equal to 10000"):
        load_study(make_study(tmp_path, retrain={"seeds": 10**6}))


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_study(bad)
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_study(bad)
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_study(tmp_path / "missing.yaml")
