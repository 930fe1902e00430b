from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch

from hpo.cli import main
from hpo.data.census import LEAKY, load_census
from hpo.data.leakage import single_feature_auc
from hpo.errors import DataError
from tests.conftest import SHARED_DATA, require


def test_generated_files_parse_into_groups_and_splits(census_dir: Path) -> None:
    ds = load_census(1, census_dir, verify_checksums=False)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 400, "valid": 100, "test": 100}
    assert [t.name for t in ds.tasks] == ["income", "marital"]
    assert "marital stat" not in ds.categorical and "income" not in ds.categorical
    assert "instance weight" not in ds.continuous + ds.categorical
    # the paper drops education and marital status in both groups (and group 1's own label, income)
    assert "education" not in ds.categorical
    assert ds.spec.n_continuous == 7 and ds.spec.n_categorical == 31
    g2 = load_census(2, census_dir, verify_checksums=False)
    assert [t.name for t in g2.tasks] == ["education", "marital"]
    assert "education" not in g2.categorical and "marital stat" not in g2.categorical
    assert "income" in g2.categorical
    assert {"education", "marital stat", "instance weight"} <= set(g2.provenance["dropped_columns"])


def test_leakage_free_variant_and_extra_drops(census_dir: Path) -> None:
    free = load_census(1, census_dir, variant="leakage-free", verify_checksums=False, use_cache=False)
    assert not set(LEAKY) & set(free.categorical)
    assert set(LEAKY) <= set(free.provenance["dropped_columns"])
    assert free.name == "census-income-group1-leakage-free"
    fewer = load_census(1, census_dir, drop=["race", "age"], verify_checksums=False, use_cache=False)
    assert "race" not in fewer.categorical and "age" not in fewer.continuous
    with pytest.raises(DataError, match=r"drop names unknown columns \['nope'\]"):
        load_census(1, census_dir, drop=["nope"], verify_checksums=False)
    with pytest.raises(DataError, match="variant must be one of"):
        load_census(1, census_dir, variant="clean", verify_checksums=False)


def test_single_feature_auc_finds_a_planted_leak(census_dir: Path) -> None:
    ds = load_census(1, census_dir, verify_checksums=False, use_cache=False)
    ranked = single_feature_auc(ds)
    assert set(ranked) == {"income", "marital"}
    assert len(ranked["income"]) == len(ds.continuous) + len(ds.categorical)
    assert all(0.5 <= r["auc"] <= 1.0 for r in ranked["income"])
    # plant a perfect leak: a categorical column that equals the marital label
    k = [t.name for t in ds.tasks].index("marital")
    train = ds.splits["train"]
    j = 0
    offset = ds.spec.offsets[j]
    train.cat[:, j] = offset + 1 + train.y[:, k].long()
    best = single_feature_auc(ds)["marital"][0]
    assert best["column"] == ds.categorical[j] and best["auc"] == pytest.approx(1.0)


def test_codes_are_global_and_unknown_is_zero(census_dir: Path) -> None:
    ds = load_census(1, census_dir, verify_checksums=False)
    offsets = torch.tensor(ds.spec.offsets)
    for s in ds.splits.values():
        local = s.cat - offsets
        assert (local >= 0).all() and (local < torch.tensor(ds.spec.cardinalities)).all()
    # every training value is known: code 0 never appears in training
    assert ((ds.splits["train"].cat - offsets) > 0).all()


def test_scaling_fitted_on_training_rows_only(census_dir: Path) -> None:
    ds = load_census(1, census_dir, verify_checksums=False)
    train = ds.splits["train"].cont
    assert torch.allclose(train.mean(0), torch.zeros(7), atol=1e-5)
    assert not torch.allclose(ds.splits["valid"].cont.mean(0), torch.zeros(7), atol=1e-3)


def test_split_is_pinned_and_changes_with_its_seed(census_dir: Path) -> None:
    a = load_census(1, census_dir, verify_checksums=False, use_cache=False)
    b = load_census(1, census_dir, verify_checksums=False, use_cache=False)
    c = load_census(1, census_dir, verify_checksums=False, use_cache=False, split_seed=7)
    assert torch.equal(a.splits["valid"].cont, b.splits["valid"].cont)
    assert not torch.equal(a.splits["valid"].cont, c.splits["valid"].cont)


def test_cache_round_trip_is_exact(census_dir: Path) -> None:
    fresh = load_census(1, census_dir, verify_checksums=False)
    cached = load_census(1, census_dir, verify_checksums=False)
    for k in fresh.splits:
        for f in ("cont", "cat", "y"):
            assert torch.equal(getattr(fresh.splits[k], f), getattr(cached.splits[k], f))
    assert cached.spec == fresh.spec and cached.provenance == fresh.provenance


def test_a_different_file_is_refused(census_dir: Path) -> None:
    with pytest.raises(
        DataError, match=r"census-income.data.gz: SHA-256 of the content is .* expected 3676a81d"
    ):
        load_census(1, census_dir)


def test_missing_files_say_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found .* `hpo data fetch census-income"):
        load_census(1, tmp_path)


def test_wrong_number_of_fields_names_file_and_line(census_dir: Path) -> None:
    path = census_dir / "census-income" / "census-income.data.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    lines[4] = ", ".join(lines[4].split(", ")[:30])
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="census-income.data.gz: line 5 has fewer than 42 fields"):
        load_census(1, census_dir, verify_checksums=False)


def test_unparseable_number_names_column_and_line(census_dir: Path) -> None:
    path = census_dir / "census-income" / "census-income.data.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    fields = lines[2].split(", ")
    fields[0] = "forty"
    lines[2] = ", ".join(fields)
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"census-income.data.gz: line 3: column 'age': expected a finite number, got 'forty'"
    ):
        load_census(1, census_dir, verify_checksums=False)


def test_cli_info_json_and_bad_group(census_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "census-income", "--group", "3", "--data-dir", str(census_dir)]) == 2
    assert "group must be one of [1, 2]" in capsys.readouterr().err


@pytest.fixture
def http_root(tmp_path: Path):  # type: ignore[no-untyped-def]
    if not (SHARED_DATA / "census-income").is_dir():
        require("HPO_REQUIRE_DATA", f"the census files are not in {SHARED_DATA} (HPO_DATA_DIR)")
    root = tmp_path / "www"
    root.mkdir()
    for f in (SHARED_DATA / "census-income").iterdir():
        shutil.copy(f, root / f.name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_from_local_server_verifies_checksums(http_root, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, url = http_root
    dest = tmp_path / "data"
    assert main(["data", "fetch", "census-income", "--data-dir", str(dest), "--url", url]) == 0
    assert (dest / "census-income" / "census-income.data.gz").stat().st_size == 5_988_689
    # a tampered file on the server is refused and nothing is left behind
    other = tmp_path / "data2"
    (root / "census-income.test.gz").write_bytes(gzip.compress(b"1, 2, 3\n"))
    assert main(["data", "fetch", "census-income", "--data-dir", str(other), "--url", url]) == 2
    assert not list((other / "census-income").glob("census-income.*"))


@pytest.mark.slow
@pytest.mark.parametrize(("group", "pearson"), [(1, -0.178), (2, -0.240)])
def test_full_census_rows_and_label_correlation(group: int, pearson: float) -> None:
    if not (SHARED_DATA / "census-income").is_dir():
        require("HPO_REQUIRE_DATA", f"the census files are not in {SHARED_DATA} (HPO_DATA_DIR)")
    ds = load_census(group, SHARED_DATA)
    info = ds.info()
    assert info["rows"] == {"train": 199_523, "valid": 49_881, "test": 49_881}
    assert info["label_pearson"] == pytest.approx(pearson, abs=5e-4)
    assert info["continuous_features"] == 7 and info["categorical_features"] == 31 + (group == 2)
    assert info["tasks"][0]["positive_rate"]["train"] == pytest.approx(
        0.0621 if group == 1 else 0.1964, abs=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize(("group", "pearson"), [(1, -0.178), (2, -0.240)])
def test_data_info_json_lists_the_papers_dropped_columns_and_the_best_single_feature(
    group: int, pearson: float, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (SHARED_DATA / "census-income").is_dir():
        require("HPO_REQUIRE_DATA", f"the census files are not in {SHARED_DATA} (HPO_DATA_DIR)")
    import json

    assert (
        main(
            ["data", "info", "census-income", "--group", str(group), "--json", "--data-dir", str(SHARED_DATA)]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert {"education", "marital stat", "instance weight"} <= set(info["provenance"]["dropped_columns"])
    assert info["label_pearson"] == pytest.approx(pearson, abs=5e-4)
    # the household column still spells out never-married in the paper's variant: the user sees it here
    assert info["best_single_feature"]["marital"]["column"] == "detailed household and family stat"
    assert info["best_single_feature"]["marital"]["auc"] == pytest.approx(0.978, abs=2e-3)
