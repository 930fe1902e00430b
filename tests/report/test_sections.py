"""Report sections as units: one ordered registry makes the page, sections compute then render, only the writer
writes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest

from hpo.cli import main
from hpo.report import html
from hpo.report.section import Context, Draw, Section, Tables
from tests.search.conftest import make_study

ROOT = Path(__file__).resolve().parents[2]
# the modules that write files: the study page's writer, the sweep page's, staged output and exported tables
WRITERS = {"html.py", "sweep.py", "output.py", "tables.py"}


def _ids(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z-]+)"', page)


def test_the_registry_is_the_page_and_a_new_section_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_study(tmp_path, retrain={"seeds": 3})
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--n-trials", "2", "--devices", "cpu", "--quiet"]) == 0
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    out = tmp_path / "a" / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    before = out.read_text()
    ids = _ids(before)
    names = [s.name for s in html.SECTIONS]
    assert {"verdict", "searched", "ranks", "loss-curves", "expected-max", "variance"} <= set(ids)
    assert [i for i in ids if i in names] == [
        n for n in names if n in ids
    ]  # the page is in the registry's order

    seen: list[Tables] = []

    def tables(ctx: Context) -> Tables:
        return {
            "seeds_per_arch": ctx.data.seed_results.groupby("architecture").size().reset_index(name="seeds")
        }

    def render(ctx: Context, frames: Tables, draw: Draw) -> str:
        seen.append(frames)  # the HTML step gets exactly what the tables step computed
        return f'\n<section id="seeds-per-arch"><h2>Seeds</h2>{len(frames["seeds_per_arch"])} rows</section>'

    added = Section("seeds-per-arch", tables, render)
    at = [s.name for s in html.SECTIONS].index("cost") + 1
    monkeypatch.setattr(html, "SECTIONS", [*html.SECTIONS[:at], added, *html.SECTIONS[at:]])
    again = tmp_path / "b" / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(again)]) == 0
    page = again.read_text()
    assert _ids(page) == [*ids[: ids.index("ranks") + 1], "seeds-per-arch", *ids[ids.index("ranks") + 1 :]]
    written = pd.read_csv(
        again.parent / "r_seeds_per_arch.csv"
    )  # written by the writer, named by the section
    assert sorted(written.seeds) == [3, 3] and len(seen) == 1
    # nothing else moved: every other table is the same file, byte for byte
    for csv in sorted((tmp_path / "a").glob("*.csv")):
        assert csv.read_bytes() == (again.parent / csv.name).read_bytes(), csv.name


def test_only_the_writers_write_files() -> None:
    """Sections compute and render; files are written by the page writers alone (so a report is staged whole)."""
    calls = {"write_table", "write_text", "write_bytes", "to_csv", "to_parquet", "open"}
    found = []
    for path in sorted((ROOT / "hpo" / "report").glob("*.py")):
        if path.name in WRITERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in calls:
                    found.append(f"{path.name}:{node.lineno} {name}")
    assert not found, found


def test_the_header_names_which_architectures_pool_several_tuning_replicates() -> None:
    """ "30 to 90 seeds per architecture" must say which have 90: those whose tuning was replicated."""
    from types import SimpleNamespace as NS

    from hpo.report.study_sections import _replicates_pooled

    def spec(replicates: int, per: dict[str, int | None]) -> NS:
        return NS(replicates=replicates, architectures=[NS(name=a, replicates=r) for a, r in per.items()])

    assert _replicates_pooled(spec(1, {"mmoe": None, "ple": None})) == ""
    assert (
        _replicates_pooled(spec(2, {"mmoe": None, "ple": None})) == " (2 tuning replicates' retrains pooled)"
    )
    mixed = spec(3, {"single_task": 1, "shared_bottom": None, "mmoe": None, "ple": 1})
    assert _replicates_pooled(mixed) == (
        " (tuning replicates' retrains pooled; replicates per architecture: shared_bottom, mmoe: 3;"
        " single_task, ple: 1)"
    )


def test_the_time_left_prices_each_tuning_run_at_its_own_seeds() -> None:
    """Replicates tuned different configurations: replicate 2's seeds take 2,000 s where replicate 1's took 300,
    so its missing seeds are priced at its own mean (collapsed fast seeds included: a sum needs the mean), and a
    replicate with no seed yet at the architecture's mean over the others."""
    from types import SimpleNamespace

    from hpo.report.study_sections import retraining_left, retraining_seconds_left

    spec = SimpleNamespace(
        architectures=[SimpleNamespace(name="sb", replicates=3), SimpleNamespace(name="st", replicates=1)],
        replicates=1,
        retrain=SimpleNamespace(seeds=4),
    )
    rows = [("sb", 1, t, 1) for t in (300.0, 300.0, 300.0, 300.0)]
    rows += [("sb", 2, 400.0, 1), ("sb", 2, 3200.0, 2)]  # a chunk of two seeds: 1,600 s a seed
    rows += [("st", 1, 100.0, 1)] * 4
    sr = pd.DataFrame(rows, columns=["architecture", "replicate", "wall_time", "replicas_in_run"])
    data = SimpleNamespace(spec=spec, seed_results=sr)
    left = retraining_left(data)  # type: ignore[arg-type]
    assert left == {"sb": (6, 12)}
    # replicate 2: 2 more at (400 + 1600) / 2 = 1000; replicate 3: 4 at sb's mean, (4*300 + 400 + 1600) / 6
    assert retraining_seconds_left(data, left) == pytest.approx(2 * 1000 + 4 * 3200 / 6)  # type: ignore[arg-type]
