"""The report's #settled rows: what a row says about the tolerance's probe."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpo.cli import main
from hpo.report.settled import _row, judged_bounds
from hpo.storage import keys

ROOT = Path(__file__).resolve().parents[2]


def bounds_by_replicate(csv: Path) -> dict[tuple[str, int], str]:
    """A report table's ``best_on_bound`` per (architecture, tuning replicate)."""
    frame = pd.read_csv(csv).fillna({"best_on_bound": ""})
    return {
        (a, int(r)): b for a, r, b in frame[["architecture", "replicate", "best_on_bound"]].itertuples(False)
    }


def _trials() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "architecture": ["mmoe"] * 6,
            "state": ["COMPLETE"] * 6,
            "value_0": [0.90, 0.91, 0.92, 0.93, 0.93, 0.93],
        }
    )


def test_a_row_names_the_probe_seeds_left_out_and_a_replaced_probe() -> None:
    summary = "seed spread 0.00035 over 3 of 4 seeds; 1 collapsed, left out (0.5512)"
    attrs = {
        "spec": {"trials": {"min": 4, "max": 8}},
        "settle_history": [{"tolerance": 2.1e-4}],
        "stop_reason": "max",
        keys.SEED_SD_PROBE: {
            "values": [0.9471, 0.9468, 0.5512, 0.9475],
            "collapsed": [2],
            "summary": summary,
        },
        keys.SEED_SD_SUPERSEDED: {"seed_sd": 0.197, "probe": {"trial": 3, "seeds": 4}},
    }
    row = _row("mmoe", _trials(), attrs, True, "")
    assert row["tolerance_probe"].startswith(summary) and "0.197, replaced" in row["tolerance_probe"]
    assert "The tolerance's probe: " + summary in row["sentence"]
    # a healthy probe is in the table, not in the sentence
    attrs[keys.SEED_SD_PROBE] = {
        "values": [0.9471, 0.9468, 0.9475],
        "collapsed": [],
        "summary": "seed spread",
    }
    del attrs[keys.SEED_SD_SUPERSEDED]
    row = _row("mmoe", _trials(), attrs, True, "")
    assert row["tolerance_probe"] == "seed spread" and "probe" not in row["sentence"]


def test_a_reopened_study_says_why_in_its_sentence() -> None:
    why = "its settled stop used a tolerance of 0.202 from a seed spread since revised; the gain's upper end 0.000623"
    attrs = {
        "spec": {"trials": {"min": 8, "max": 32}},
        "settle_history": [
            {"trials": 12, "tolerance": 0.202, "decision": "settled"},
            {"trials": 12, "tolerance": 1.1e-4, "decision": "reopened: extend to 18", "why": why},
        ],
    }
    row = _row("mmoe", _trials(), attrs, True, "")
    assert row["stop_reason"] == "running or not judged" and not row["settled"]
    assert (
        row["tolerance"] == 1.1e-4
        and f"Judged again at 12 trials (reopened: extend to 18): {why}." in row["sentence"]
    )


def test_the_verdict_names_the_bounds_the_rule_judged_not_the_best_trials_own_ranges() -> None:
    """A best trial drawn before its range widened, or at the budget's unit ceiling, reads as on a bound of its
    own distributions; the rule judged it against the widened range without the ceiling. The verdict's caveats
    follow the rule (what `#settled` shows), per tuning replicate; a row the rule has not judged keeps its own."""
    from hpo.report.verdict import caveats

    searched = pd.DataFrame(
        [
            {"architecture": "ple", "replicate": 1, "complete_trials": 32, "best_on_bound": "n_shared=4 (high)"},
            {"architecture": "mmoe", "replicate": 1, "complete_trials": 32,
             "best_on_bound": "tower_units=2048 (high), n_experts=23 (high)"},
            {"architecture": "mmoe", "replicate": 2, "complete_trials": 32, "best_on_bound": "lr=0.0001 (low)"},
        ]
    )  # fmt: skip
    frame = pd.DataFrame(
        [
            {"architecture": "ple", "replicate": 1, "best_on_bound": ""},
            {"architecture": "mmoe", "replicate": 1, "best_on_bound": "n_experts=23 (high bound)"},
            {"architecture": "mmoe", "replicate": 3, "best_on_bound": ""},  # not in searched: ignored
            {"architecture": "mmoe", "replicate": float("nan"), "best_on_bound": ""},  # not started
        ]
    )
    judged = judged_bounds(searched, frame)
    assert list(judged.best_on_bound) == ["", "n_experts=23 (high bound)", "lr=0.0001 (low)"]
    assert searched.best_on_bound[0] == "n_shared=4 (high)"  # a copy: the searched table itself is untouched
    seeds = pd.DataFrame({"architecture": ["ple"] * 30, "seed": range(30), "status": ["ok"] * 30})
    text = " | ".join(caveats([], {}, seeds, judged))
    assert "ple's best" not in text and "tower_units" not in text
    assert "mmoe's best configuration (tuning replicate 1) sits on a search-space bound (n_experts=23" in text
    assert (
        "mmoe's best configuration (tuning replicate 2) sits on a search-space bound (lr=0.0001 (low))"
        in text
    )
    assert judged_bounds(searched, pd.DataFrame()) is searched


def test_what_was_searched_names_the_bounds_settled_names(tmp_path: Path) -> None:
    """`#searched` and `_searched.csv` show the bound hits the rule judged, as `#settled` and the verdict do: the
    group-1 full-space export's raw tables put its best trials on the 2048-unit ceiling and on ranges widened
    since; the report rendered from them names, per tuning replicate, exactly the `#settled` table's bounds."""
    stem = "census_group1_leakage_free_full"
    export = ROOT / "docs" / "results" / "runs" / stem
    raw = pd.concat(pd.read_csv(p) for p in sorted(export.glob("*_searched.csv")))
    assert raw.best_on_bound.str.contains("layer_units=2048", na=False).any()  # what the old table showed
    out = tmp_path / f"{stem}.html"
    argv = ["report", str(ROOT / "studies" / f"{stem}.yaml"), "--from-tables", str(export), "--out", str(out)]
    assert main(argv) == 0
    searched = bounds_by_replicate(tmp_path / f"{stem}_searched.csv")
    assert searched == bounds_by_replicate(tmp_path / f"{stem}_settled.csv") and len(searched) == 9
    assert not any("layer_units" in b for b in searched.values())
    assert searched[("single_task", 1)] == "epochs=30 (high bound)"
