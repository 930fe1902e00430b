"""Bad input, tried systematically (hypothesis): malformed study specs, search spaces, dataset declarations and
command lines each end in one clear error line and exit code 2 — never a traceback — and never write a database."""

from __future__ import annotations

import copy
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo.cli import main
from tests.search.conftest import ROOT, make_study

GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
SMOKE = yaml.safe_load((ROOT / "studies" / "smoke.yaml").read_text())
SETTINGS = settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def _paths(d: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, (*prefix, k))
    return out


def _set(d: dict, path: tuple, value: object) -> dict:
    d = copy.deepcopy(d)
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


def _one_line_error(capsys, rc: int) -> None:  # type: ignore[no-untyped-def]
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    if rc != 0:
        assert rc == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err


@SETTINGS
@given(path=st.sampled_from(_paths(SMOKE)), value=GARBAGE)
def test_malformed_study_specs(tmp_path_factory, capsys, path: tuple, value: object) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("spec")
    (tmp / "studies").mkdir()
    (tmp / "search_spaces").symlink_to(ROOT / "search_spaces")
    spec = tmp / "studies" / "bad.yaml"
    spec.write_text(yaml.safe_dump(_set(SMOKE, path, value)))
    rc = main(["validate", str(spec), "--samples", "5"])
    _one_line_error(capsys, rc)
    if rc != 0:
        db = tmp / "never.db"
        assert main(["run", str(spec), "--storage", f"sqlite:///{db}", "--quiet"]) == 2
        _one_line_error(capsys, 2)
        assert not db.exists()


SPACE = yaml.safe_load((ROOT / "search_spaces" / "mmoe.yaml").read_text())


@SETTINGS
@given(path=st.sampled_from(_paths(SPACE)), value=GARBAGE)
def test_malformed_search_spaces(tmp_path_factory, capsys, path: tuple, value: object) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path_factory.mktemp("space") / "mmoe.yaml"
    p.write_text(yaml.safe_dump(_set(SPACE, path, value)))
    _one_line_error(capsys, main(["validate", str(p), "--samples", "5"]))


DATASET = {
    "name": "d",
    "file": "t.csv",
    "continuous": ["x"],
    "categorical": ["c"],
    "tasks": [
        {"name": "a", "column": "y", "kind": "binary", "equals": 1},
        {"name": "r", "column": "x", "kind": "regression"},
    ],
    "split": {"valid": 0.2, "test": 0.2, "seed": 0},
}


@SETTINGS
@given(path=st.sampled_from(_paths(DATASET)), value=GARBAGE)
def test_malformed_dataset_declarations(tmp_path_factory, capsys, path: tuple, value: object) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ds")
    (tmp / "t.csv").write_text("x,c,y\n" + "".join(f"{i * 0.1},{'ab'[i % 2]},{i % 2}\n" for i in range(40)))
    p = tmp / "d.yaml"
    p.write_text(yaml.safe_dump(_set(DATASET, path, value)))
    _one_line_error(capsys, main(["data", "info", str(p)]))


WORDS = st.sampled_from(
    [
        "run",
        "worker",
        "status",
        "validate",
        "data",
        "info",
        "retrain",
        "report",
        "export",
        "models",
        "--storage",
        "--json",
        "--n-trials",
        "--workers",
        "--format",
        "--group",
        "census-income",
        "synthetic",
        "nope.yaml",
        "-1",
        "0",
        "x",
        "sqlite:///",
        "mysql://a@b/c",
        "postgresql://u:pw@127.0.0.1:1/x",
    ]
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(argv=st.lists(WORDS, min_size=1, max_size=5))
def test_random_command_lines_never_trace_back(
    tmp_path_factory, capsys, monkeypatch, argv: list[str]
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path_factory.mktemp("cli"))
    rc = main(argv)
    out, err = capsys.readouterr()
    assert isinstance(rc, int) and "Traceback" not in out + err
    assert "pw@" not in out + err  # a password never shows
    if argv[0] not in ("status", "models"):
        assert not list(Path.cwd().glob("*.db")) or rc == 0


def test_a_password_url_taken_for_a_file_is_still_masked(capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by the fuzzer in CI: pathlib turns 'postgresql://' into 'postgresql:/' in a 'file not found' error."""
    assert main(["run", "postgresql://u:pw@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert "pw@" not in err and "u:***@" in err


# -- storage and counts: every operator error is one line, exit code 2, and creates nothing ----------------------


def _small_study(tmp: Path, **overrides: object) -> Path:
    return make_study(tmp, trials=2, architectures=["shared_bottom"], **overrides)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _refused(capsys, argv: list[str], root: Path, expect: str) -> str:  # type: ignore[no-untyped-def]
    before = _files(root)
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (argv, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expect in lines[0], lines[0]
    assert _files(root) == before, _files(root) - before  # no database, folder or lock file appeared
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["status", "--storage", "sqlite:///{tmp}/missing.db"], "no database at"),
        (["retrain", "{study}", "--storage", "sqlite:///{tmp}/missing.db"], "no database at"),
        (["report", "{study}", "--storage", "sqlite:///{tmp}/missing.db"], "no database at"),
        (
            ["export", "{study}", "--storage", "sqlite:///{tmp}/missing.db", "--out", "{tmp}/out"],
            "no database at",
        ),
        (["dashboard", "--storage", "sqlite:///{tmp}/missing.db"], "no database at"),
        (["worker", "{study}", "--storage", "sqlite:///{tmp}/missing.db"], "no database at"),
        (
            ["status", "--storage", "postgresql://u:pw@127.0.0.1:99999/x"],
            "port 99999 is out of range (1-65535)",
        ),
        (["status", "--storage", "not a url"], "is not a URL"),
        (["status", "--storage", "grpc://127.0.0.1:1"], "no gRPC proxy answers there"),
        (["status", "--storage", "journal:///{tmp}/missing.log"], "no database at"),
        (["proxy", "--storage", "journal:///{tmp}/missing.log"], "not one"),
        (["status", "--storage", "sqlite:///{tmp}/no/such/folder/x.db"], "no database at"),
        (["run", "{study}", "--storage", "sqlite:///{tmp}/no/such/folder/x.db"], "does not exist"),
        (["run", "{study}", "--n-trials", "-5"], "allowed: 1 to 10000"),
        (["run", "{study}", "--n-trials", "100000000"], "allowed: 1 to 10000"),
        (["run", "{study}", "--workers", "-1"], "allowed: 0 to 256"),
        (["retrain", "{study}", "--seeds", "-5"], "allowed: 1 to 10000"),
        (["retrain", "{study}", "--workers", "0"], "allowed: 1 to 256"),
        (["dashboard", "--port", "70000"], "allowed: 1 to 65535"),
    ],
)
def test_storage_and_count_errors_are_one_line_and_create_nothing(  # type: ignore[no-untyped-def]
    tmp_path, capsys, monkeypatch, argv: list[str], expect: str
) -> None:
    monkeypatch.chdir(tmp_path)
    study = _small_study(tmp_path)
    argv = [a.format(tmp=tmp_path, study=study) for a in argv]
    _refused(capsys, argv, tmp_path, expect)


def test_huge_trial_count_in_a_spec_is_refused_with_its_range(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    study = make_study(tmp_path, trials=100_000_000)
    _refused(capsys, ["run", str(study)], tmp_path, "less than or equal to 10000")


def test_over_budget_space_is_refused_at_run_before_any_database(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    study = _small_study(tmp_path)
    space = tmp_path / "search_spaces" / "shared_bottom.yaml"
    raw = yaml.safe_load(space.read_text())
    first = next(iter(raw["params"]))
    raw["params"][first] = {"type": "int", "low": 3000, "high": 4000}
    space.write_text(yaml.safe_dump(raw))
    _refused(capsys, ["run", str(study), "--storage", f"sqlite:///{tmp_path}/b.db"], tmp_path, "budget")


def test_retrain_before_run_names_the_missing_study(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    queued = _small_study(tmp_path)
    url = f"sqlite:///{tmp_path}/q.db"
    assert (
        main(["run", str(queued), "--storage", url, "--workers", "0"]) == 0
    )  # a database with another study
    capsys.readouterr()
    other = _small_study(tmp_path)
    line = _refused(capsys, ["retrain", str(other), "--storage", url], tmp_path, "no tuning study")
    assert "run `hpo run" in line


def test_read_only_database_is_one_line(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    study = _small_study(tmp_path)
    db = tmp_path / "ro.db"
    assert main(["run", str(study), "--storage", f"sqlite:///{db}", "--workers", "0"]) == 0
    capsys.readouterr()
    ro = f"sqlite:///file:{db}?mode=ro&uri=true"  # read-only for root too, unlike a chmod
    _refused(capsys, ["run", str(study), "--storage", ro, "--devices", "cpu"], tmp_path, "readonly database")


def test_full_disk_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A full disk, made real with a file-size limit on the process: SQLite cannot grow the database."""
    study = _small_study(tmp_path)
    db = tmp_path / "full.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    hpo = [sys.executable, "-m", "hpo.cli"]
    subprocess.run(
        [*hpo, "run", str(study), "--storage", f"sqlite:///{db}", "--workers", "0"], env=env, check=True
    )
    size = db.stat().st_size

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    done = subprocess.run(
        [*hpo, "run", str(study), "--storage", f"sqlite:///{db}", "--devices", "cpu", "--quiet"],
        env=env,
        preexec_fn=limit,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: storage failed:"), done.stderr
    assert "disk" in lines[0] and "Traceback" not in done.stderr
