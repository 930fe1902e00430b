"""Shared fixtures: an isolated cache directory, census-format files generated on the fly, service URLs."""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

import pytest
import sqlalchemy

from hpo.data.census import COLUMNS, default_data_dir

# the real data where hpo itself looks: $HPO_DATA_DIR, else ../shared/data beside the checkout
SHARED_DATA = default_data_dir().resolve()
LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hpo-cache"))


@pytest.fixture(autouse=True)
def _threads_restored(monkeypatch: pytest.MonkeyPatch) -> object:
    """A test that runs a worker in this process installs a thread plan (torch's count, BLAS variables): undo it,
    so the next test starts with the process's own settings."""
    import torch

    from hpo import cores
    from hpo.training import threads

    for name in (*cores.BLAS_ENV, cores.THREADS_ENV, cores.WORKERS_ENV):
        monkeypatch.setenv(name, os.environ[name]) if name in os.environ else monkeypatch.delenv(
            name, raising=False
        )
    before, plan = torch.get_num_threads(), threads.current_plan()
    yield
    monkeypatch.setattr(threads, "_PLAN", plan)
    torch.set_num_threads(before)


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every training process of the test, its children included, on one CPU thread (``HPO_THREADS=1``).

    For tests that compare results to the bit across runs or processes: a float sum's order, so a value's last
    bits, can depend on the thread count (PyTorch's CPU matrix products split sums between threads from some
    count on, which differs between CPUs: here from 4 threads, on one CI machine from 2), and a planned count
    follows the cores free at the moment, which differs between two runs on a busy machine."""
    from hpo import cores

    monkeypatch.setenv(cores.THREADS_ENV, "1")


def census_row(rng: random.Random, label_rich: bool | None = None) -> list[str]:
    """One row in the real file's format (42 fields), with values drawn from the real categories' style."""
    rich = rng.random() < 0.1 if label_rich is None else label_rich
    married = rng.choice(["Never married", "Married-civilian spouse present", "Divorced", "Widowed"])
    row = {c: "Not in universe" for c in COLUMNS}
    row.update(
        {
            "age": str(rng.randint(0, 90)),
            "class of worker": rng.choice(["Private", "Self-employed-incorporated", "Not in universe"]),
            "detailed industry recode": str(rng.randint(0, 51)),
            "detailed occupation recode": str(rng.randint(0, 46)),
            "education": rng.choice(
                [
                    "High school graduate",
                    "Bachelors degree(BA AB BS)",
                    "10th grade",
                    "Masters degree(MA MS MEng MEd MSW MBA)",
                ]
            ),
            "wage per hour": str(rng.choice([0, 0, 500, 1200])),
            "marital stat": married,
            "race": rng.choice(["White", "Black", "Asian or Pacific Islander"]),
            "sex": rng.choice(["Male", "Female"]),
            "capital gains": str(rng.choice([0, 0, 0, 15024])),
            "capital losses": str(rng.choice([0, 0, 1902])),
            "dividends from stocks": str(rng.choice([0, 0, 100, 2000])),
            "tax filer stat": rng.choice(["Nonfiler", "Joint both under 65", "Single"]),
            "instance weight": f"{rng.uniform(500, 3000):.2f}",
            "migration code-change in msa": rng.choice(["?", "Nonmover"]),
            "num persons worked for employer": str(rng.randint(0, 6)),
            "own business or self employed": str(rng.randint(0, 2)),
            "veterans benefits": str(rng.randint(0, 2)),
            "weeks worked in year": str(rng.randint(0, 52)),
            "year": rng.choice(["94", "95"]),
            "income": "50000+." if rich else "- 50000.",
        }
    )
    return [row[c] for c in COLUMNS]


def write_census_files(directory: Path, n_train: int = 400, n_test: int = 200, seed: int = 0) -> Path:
    """Census-format ``.gz`` files (not the real content: checksums differ) under ``directory/census-income``."""
    rng = random.Random(seed)
    target = directory / "census-income"
    target.mkdir(parents=True, exist_ok=True)
    for name, n in (("census-income.data.gz", n_train), ("census-income.test.gz", n_test)):
        with gzip.open(target / name, "wt") as f:
            for _ in range(n):
                f.write(", ".join(census_row(rng)) + "\n")
    return directory


@pytest.fixture
def census_dir(tmp_path: Path) -> Path:
    return write_census_files(tmp_path)


def require(env_flag: str, reason: str) -> None:
    """Skip on a user's machine, fail in CI (where ``env_flag`` is set) when a service is missing."""
    if os.environ.get(env_flag):
        pytest.fail(f"{reason} (required because {env_flag} is set)")
    pytest.skip(reason)


def _answers(url: str) -> bool:
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def _default_postgres() -> str | None:
    """A PostgreSQL answering on the default local port (database ``test``, user ``postgres``), if any."""
    return LOCAL_POSTGRES if _answers(LOCAL_POSTGRES) else None


@pytest.fixture
def postgres_url(_default_postgres: str | None) -> str:
    """``$HPO_TEST_POSTGRES_URL``, else a local server that answers on the default port."""
    url = os.environ.get("HPO_TEST_POSTGRES_URL") or _default_postgres
    if not url:
        require(
            "HPO_REQUIRE_POSTGRES",
            f"no PostgreSQL: HPO_TEST_POSTGRES_URL is not set and none answers at {LOCAL_POSTGRES}",
        )
    assert url is not None
    try:
        engine = sqlalchemy.create_engine(
            url.replace("postgresql://", "postgresql+psycopg://"), connect_args={"connect_timeout": 5}
        )
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except sqlalchemy.exc.OperationalError as exc:
        require("HPO_REQUIRE_POSTGRES", f"PostgreSQL at {url} is not reachable: {exc.orig}")
    return url


SUMMARY_LINES: list[str] = []


# what a group of skipped tests needs, by a word of their skip reason
SKIP_GROUPS = (
    ("chromium", "browser tests", "install Debian's chromium (`make test` does, as root)"),
    ("PostgreSQL", "PostgreSQL tests", f"start a server at {LOCAL_POSTGRES} or set HPO_TEST_POSTGRES_URL"),
    (
        "census",
        "real census-income tests",
        "put the UCI files under $HPO_DATA_DIR (`hpo data fetch census-income`)",
    ),
    ("CUDA", "CUDA tests", "run them on a machine with a GPU (scripts/gpu_check.sh)"),
    ("root", "tests that mount file systems", "run as root (CI does)"),
)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Lines tests want in CI's output whatever the capture mode (the reliability suite's summary), then one
    line per group of skipped tests with how to enable it."""
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        group = next((g for g in SKIP_GROUPS if g[0].lower() in reason.lower()), None)
        key = group[0] if group else "other"
        counts[key] = counts.get(key, 0) + 1
    for word, what, how in SKIP_GROUPS:
        if counts.get(word):
            terminalreporter.write_line(f"skipped {counts[word]} {what}: {how}")
    if counts.get("other"):
        terminalreporter.write_line(f"skipped {counts['other']} other tests: see the reasons above (-ra)")
