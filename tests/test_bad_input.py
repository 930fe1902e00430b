"""Bad input, tried systematically (hypothesis): malformed study specs, search spaces, dataset declarations and
command lines each end in one clear error line and exit code 2 — never a traceback — and never write a database."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo.cli import main
from tests.search.conftest import ROOT

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
