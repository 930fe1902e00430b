"""The report's #settled rows: what a row says about the tolerance's probe."""

from __future__ import annotations

import pandas as pd

from hpo.report.settled import _row
from hpo.storage import keys


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
