"""The results README's table of a tuning-until-settled run in progress, from its export (``hpo export
--partial``, as ``scripts/census_full.sh snapshot`` writes it): per architecture of one replicate, the complete
trials, every judgement of the settled rule (trials: gain of the last doubling [upper end of its 95% interval] ->
decision), the tolerance, the best configuration's bound hits at the latest judgement and the ranges the rule
widened. tests/test_results_docs.py checks the README's copy against the same files.

    python scripts/settle_table.py docs/results/runs/census_group1_leakage_free_full census_group1_leakage_free_full.rep1
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

LABELS = {
    "single_task": "Single-Task",
    "shared_bottom": "Shared-Bottom",
    "mmoe": "MMoE",
    "ple": "PLE",
    "adatt": "AdaTT",
}


def judgement(h: dict[str, Any]) -> str:
    gain = f"{h['gain']:.1e}" if h.get("gain") is not None else "n/a"
    high = f"{h['gain_high']:.1e}" if h.get("gain_high") is not None else "n/a"
    return f"{h['trials']}: {gain} [{high}] -> {h['decision']}"


def widened(w: dict[str, Any]) -> str:
    return (
        f"{w['param']} {w['from'][0]:g}..{w['from'][1]:g} -> {w['to'][0]:g}..{w['to'][1]:g} at {w['trials']}"
    )


def rows(export: Path, name: str) -> list[str]:
    attrs = json.loads((export / f"{name}_attrs.json").read_text())["study_attrs"]
    trials = pd.read_csv(export / f"{name}_trials.csv")
    out = [
        "| architecture | complete trials | judgements (trials: gain [95% upper end] -> decision) | tolerance "
        "| best on a bound (latest judgement) | ranges widened |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arch, a in attrs.items():
        history = a.get("settle_history") or []
        complete = int(((trials.architecture == arch) & (trials.state == "COMPLETE")).sum())
        tolerance = f"{history[-1]['tolerance']:.1e}" if history and history[-1].get("tolerance") else "n/a"
        hits = ", ".join(history[-1]["bound_hits"]) if history and history[-1]["bound_hits"] else "none"
        wide = "; ".join(widened(w) for w in a.get("space_expansions") or []) or "none"
        out.append(
            f"| {LABELS.get(arch, arch)} | {complete} | {'; '.join(map(judgement, history)) or 'none yet'} | {tolerance} | {hits} "
            f"| {wide} |"
        )
    return out


if __name__ == "__main__":
    print("\n".join(rows(Path(sys.argv[1]), sys.argv[2])))
