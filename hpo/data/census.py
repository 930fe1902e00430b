"""UCI Census-income (KDD), the MMoE paper's real benchmark, prepared by one pinned, documented pipeline.

* Files: ``census-income.data[.gz]`` (199,523 training rows) and ``census-income.test[.gz]`` (99,762 rows), 42
  comma-separated fields each, verified against the SHA-256 of their decompressed content (the README beside the
  data lists them), so a gzip, a plain or a re-downloaded copy are all accepted when the content is the same.
* Groups (docs/science.md, "UCI Census-income"): 1 = income > 50K and never married; 2 = college degree and
  never married.
* Inputs: every column except ``instance weight`` (a sampling weight) and both groups' label columns
  ``education`` and ``marital stat``, in both groups, as the paper says ("we remove education and marital status
  from input features as they are treated as labels in these setups"). The ``leakage-free`` variant also drops the
  three columns that spell out the marital label (:data:`LEAKY`: alone they predict never-married with training
  AUC 0.90-0.98); ``drop`` names further columns. Continuous
  columns are standardised; the others (including integer-coded ones such as ``detailed industry recode``) are
  categorical. ``?`` is kept as its own category. Both are fitted on training rows only.
* Splits: the training file is the training split; the test file is shuffled with ``split_seed`` (default 2018)
  and cut 1:1 into validation (first half) and test.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hpo.data._cache import cache_key, file_sha256, load_cached, save_cached
from hpo.data._tabular import Split, TabularDataset, fit_encoder, split_indices
from hpo.errors import DataError
from hpo.schema import TaskSpec

__all__ = [
    "COLUMNS",
    "DEFAULT_SPLIT_SEED",
    "GROUPS",
    "LEAKY",
    "UCI_URL",
    "VARIANTS",
    "default_data_dir",
    "fetch_census",
    "load_census",
]

COLUMNS = (
    "age",
    "class of worker",
    "detailed industry recode",
    "detailed occupation recode",
    "education",
    "wage per hour",
    "enroll in edu inst last wk",
    "marital stat",
    "major industry code",
    "major occupation code",
    "race",
    "hispanic origin",
    "sex",
    "member of a labor union",
    "reason for unemployment",
    "full or part time employment stat",
    "capital gains",
    "capital losses",
    "dividends from stocks",
    "tax filer stat",
    "region of previous residence",
    "state of previous residence",
    "detailed household and family stat",
    "detailed household summary in household",
    "instance weight",
    "migration code-change in msa",
    "migration code-change in reg",
    "migration code-move within reg",
    "live in this house 1 year ago",
    "migration prev res in sunbelt",
    "num persons worked for employer",
    "family members under 18",
    "country of birth father",
    "country of birth mother",
    "country of birth self",
    "citizenship",
    "own business or self employed",
    "fill inc questionnaire for veteran's admin",
    "veterans benefits",
    "weeks worked in year",
    "year",
    "income",
)
CONTINUOUS = (
    "age",
    "wage per hour",
    "capital gains",
    "capital losses",
    "dividends from stocks",
    "num persons worked for employer",
    "weeks worked in year",
)
NOT_FEATURES = ("instance weight",)
# The paper: "we remove education and marital status from input features as they are treated as labels in these
# setups" -- in both groups, whichever of the two is a label of the group at hand (and each group's own label
# columns, so income too in group 1).
PAPER_DROPPED = ("education", "marital stat")
# Columns whose categories encode marital status ("Child <18 never marr not in subfamily", "Nonfiler", ...): alone
# they predict never-married with training AUC 0.978, 0.947 and 0.902 (`hpo data info` shows it).
LEAKY = ("detailed household and family stat", "detailed household summary in household", "tax filer stat")
VARIANTS = ("paper", "leakage-free")
COLLEGE = frozenset(
    {
        "Associates degree-occup /vocational",
        "Associates degree-academic program",
        "Bachelors degree(BA AB BS)",
        "Masters degree(MA MS MEng MEd MSW MBA)",
        "Prof school degree (MD DDS DVM LLB JD)",
        "Doctorate degree(PhD EdD)",
    }
)


@dataclass(frozen=True)
class Label:
    name: str
    column: str
    positive: Callable[[pd.Series], np.ndarray]
    definition: str


INCOME = Label("income", "income", lambda s: (s == "50000+.").to_numpy(), "income == '50000+.'")
MARITAL = Label(
    "marital", "marital stat", lambda s: (s == "Never married").to_numpy(), "marital stat == 'Never married'"
)
EDUCATION = Label(
    "education", "education", lambda s: s.isin(COLLEGE).to_numpy(), f"education in {sorted(COLLEGE)}"
)
GROUPS: dict[int, tuple[Label, Label]] = {1: (INCOME, MARITAL), 2: (EDUCATION, MARITAL)}

# SHA-256 of the decompressed files (README beside the data); stable whatever the compression
CHECKSUMS = {
    "census-income.data": "3676a81db7d3528f3f8b9f3c699d0f0aa28db45e6e994fa0b8ed38327539ee86",
    "census-income.test": "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c",
}
ROWS = {"census-income.data": 199_523, "census-income.test": 99_762}
UCI_URL = "https://archive.ics.uci.edu/static/public/117/census+income+kdd.zip"
DEFAULT_SPLIT_SEED = 2018
DATASET_DIR = "census-income"


def default_data_dir() -> Path:
    """``$HPO_DATA_DIR``, else ``../shared/data`` when it exists (this project's layout), else ``./data``."""
    env = os.environ.get("HPO_DATA_DIR")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        shared = base.parent / "shared" / "data"
        if shared.is_dir():
            return shared
    return Path("data")


def _locate(data_dir: Path, stem: str) -> Path:
    for base in (data_dir / DATASET_DIR, data_dir):
        for name in (f"{stem}.gz", stem):
            if (base / name).is_file():
                return base / name
    raise DataError(
        f"census-income: {stem}[.gz] not found under {data_dir / DATASET_DIR}; "
        f"run `hpo data fetch census-income --data-dir {data_dir}` or set HPO_DATA_DIR"
    )


def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def verify(path: Path, stem: str) -> None:
    """Refuse a file whose decompressed content differs from the published one."""
    h = hashlib.sha256()
    try:
        with _open(path) as f:
            while block := f.read(1 << 20):
                h.update(block)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as {stem} ({exc})") from None
    if h.hexdigest() != CHECKSUMS[stem]:
        raise DataError(
            f"{path}: SHA-256 of the content is {h.hexdigest()}, expected {CHECKSUMS[stem]} "
            f"(the UCI file {stem}); the file is corrupt or not the census-income data"
        )


def read_raw(path: Path, expected_rows: int | None = None) -> pd.DataFrame:
    """Parse the 42 fields of every row (``", "`` separated, no header) as strings, checking the shape."""
    try:
        df = pd.read_csv(
            path,
            header=None,
            names=list(COLUMNS),
            sep=",",
            skipinitialspace=True,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            engine="c",
        )
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split())
        raise DataError(
            f"{path}: expected {len(COLUMNS)} comma-separated fields per row ({detail})"
        ) from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    short = (df["income"] == "").to_numpy()
    if short.any():
        row = int(np.flatnonzero(short)[0]) + 1
        raise DataError(f"{path}: line {row} has fewer than {len(COLUMNS)} fields")
    if expected_rows is not None and len(df) != expected_rows:
        raise DataError(f"{path}: expected {expected_rows} rows, found {len(df)}")
    return df


def _dropped_columns(
    group: int, variant: str, drop: tuple[str, ...] | list[str], split_seed: int
) -> set[str]:
    """The columns left out of the inputs, after checking the options (each mistake one line)."""
    if group not in GROUPS:
        raise DataError(f"census-income: group must be one of {sorted(GROUPS)}, got {group!r}")
    if variant not in VARIANTS:
        raise DataError(f"census-income: variant must be one of {list(VARIANTS)}, got {variant!r}")
    unknown = [c for c in drop if c not in COLUMNS]
    if unknown:
        raise DataError(
            f"census-income: drop names unknown columns {unknown}; the columns are {list(COLUMNS)}"
        )
    if not isinstance(split_seed, int) or split_seed < 0:
        raise DataError(f"census-income: split_seed must be a non-negative integer, got {split_seed!r}")
    dropped = set(NOT_FEATURES) | set(PAPER_DROPPED) | {lab.column for lab in GROUPS[group]} | set(drop)
    if variant == "leakage-free":
        dropped |= set(LEAKY)
    return dropped


def _provenance(
    group: int, variant: str, files: dict[str, Path], hashes: dict[str, str], verified: bool, split_seed: int,
    dropped: set[str],
) -> dict[str, object]:  # fmt: skip
    return {
        "dataset": "census-income",
        "group": group,
        "variant": variant,
        "files": {stem: {"path": str(p), "sha256": hashes[stem]} for stem, p in files.items()},
        "content_sha256_verified": verified,
        "split": f"train = census-income.data; census-income.test shuffled with seed {split_seed}, "
        "first half validation, second half test",
        "split_seed": split_seed,
        "labels": {lab.name: lab.definition for lab in GROUPS[group]},
        "dropped_columns": sorted(dropped),
        "preprocessing": "continuous: standardised with training mean/std; categorical: vocabulary of the "
        "training rows, unseen -> unknown code 0; '?' is a category",
    }


def _splits(
    files: dict[str, Path], group: int, dropped: set[str], split_seed: int, verified: bool
) -> tuple[dict[str, Split], list[str], list[str], Any]:
    """Train from census-income.data; validation and test: the two halves of census-income.test."""
    train_df = read_raw(files["census-income.data"], ROWS["census-income.data"] if verified else None)
    test_df = read_raw(files["census-income.test"], ROWS["census-income.test"] if verified else None)
    labels = GROUPS[group]
    cont = [c for c in CONTINUOUS if c not in dropped]
    cat = [c for c in COLUMNS if c not in CONTINUOUS and c not in dropped]
    enc = fit_encoder(train_df, cont, cat, str(files["census-income.data"]))
    valid_idx, test_idx = split_indices(len(test_df), [0.5, 0.5], split_seed)

    def make(df: pd.DataFrame, source: Path) -> Split:
        x_cont, x_cat = enc.encode(df, str(source))
        y = np.stack([lab.positive(df[lab.column]) for lab in labels], axis=1).astype(np.float32)
        return Split(x_cont, x_cat, torch.from_numpy(y))

    test_src = files["census-income.test"]
    splits = {
        "train": make(train_df, files["census-income.data"]),
        "valid": make(test_df.iloc[valid_idx], test_src),
        "test": make(test_df.iloc[test_idx], test_src),
    }
    return splits, cont, cat, enc


def load_census(
    group: int = 1,
    data_dir: str | Path | None = None,
    *,
    split_seed: int = DEFAULT_SPLIT_SEED,
    variant: str = "paper",
    drop: tuple[str, ...] | list[str] = (),
    use_cache: bool = True,
    verify_checksums: bool = True,
) -> TabularDataset:
    """Prepare (or load from the cache) census-income for task ``group`` 1 or 2.

    ``variant`` ``paper`` drops the label columns of both groups from the inputs; ``leakage-free`` also drops
    :data:`LEAKY`; ``drop`` names further columns to leave out.
    """
    dropped = _dropped_columns(group, variant, drop, split_seed)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    files = {stem: _locate(data_dir, stem) for stem in CHECKSUMS}
    hashes = {stem: file_sha256(p) for stem, p in files.items()}
    options = {
        "group": group,
        "split_seed": split_seed,
        "verified": verify_checksums,
        "dropped": sorted(dropped),
    }
    key = cache_key("census-income", hashes, options)
    if use_cache and (cached := load_cached(key)) is not None:
        return cached
    if verify_checksums:
        for stem, p in files.items():
            verify(p, stem)
    splits, cont, cat, enc = _splits(files, group, dropped, split_seed, verify_checksums)
    ds = TabularDataset(
        f"census-income-group{group}" + ("" if variant == "paper" else f"-{variant}"),
        enc.spec,
        tuple(TaskSpec(lab.name, "binary") for lab in GROUPS[group]),
        splits,
        tuple(cont),
        tuple(cat),
        _provenance(group, variant, files, hashes, verify_checksums, split_seed, dropped),
    )
    if use_cache:
        save_cached(key, ds)
    return ds


def _download(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as exc:
        raise DataError(f"cannot download {url}: {exc}") from None


def _extract_members(archive: Path, workdir: Path) -> None:
    """Unpack the UCI zip (which holds a ``census.tar.gz``) down to the plain data files."""
    pending = [archive]
    while pending:
        a = pending.pop()
        if zipfile.is_zipfile(a):
            with zipfile.ZipFile(a) as z:
                for m in z.namelist():
                    if Path(m).name and not m.endswith("/"):
                        target = workdir / Path(m).name
                        target.write_bytes(z.read(m))
                        pending.append(target)
        elif tarfile.is_tarfile(a):
            with tarfile.open(a) as t:
                for info in t.getmembers():
                    if info.isfile() and (f := t.extractfile(info)) is not None:
                        target = workdir / Path(info.name).name
                        target.write_bytes(f.read())
                        pending.append(target)


def fetch_census(data_dir: str | Path, url: str = UCI_URL, timeout: float = 60.0) -> dict[str, Path]:
    """Download the census-income files into ``data_dir/census-income`` and verify their checksums.

    ``url`` is either the UCI archive (a ``.zip``) or a base URL under which ``census-income.data.gz``,
    ``census-income.test.gz`` and ``census-income.names`` are served. Files land atomically: a failed or
    mismatching download leaves nothing behind.
    """
    target = Path(data_dir) / DATASET_DIR
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        work = Path(tmp)
        if url.endswith(".zip"):
            archive = work / "archive.zip"
            _download(url, archive, timeout)
            _extract_members(archive, work)
        else:
            for name in ("census-income.data.gz", "census-income.test.gz", "census-income.names"):
                _download(f"{url.rstrip('/')}/{name}", work / name, timeout)
        out = {}
        for stem in CHECKSUMS:
            found = next((work / n for n in (f"{stem}.gz", stem) if (work / n).is_file()), None)
            if found is None:
                raise DataError(f"{url}: the download holds no {stem}")
            verify(found, stem)
            out[stem] = target / found.name
        for dest in out.values():
            os.replace(work / dest.name, dest)
        names = work / "census-income.names"
        if names.is_file():
            os.replace(names, target / "census-income.names")
    return out
