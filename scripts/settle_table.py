"""The results README's table of a tuning-until-settled run in progress, from its export (``hpo export
--partial``, as ``scripts/census_full.sh snapshot`` writes it): per architecture of one replicate, the complete
trials, every judgement of the settled rule (trials: gain of the last doubling [upper end of its 95% interval] ->
decision), the tolerance, the best configuration's bound hits at the latest judgement and the ranges the rule
widened. tests/test_results_docs.py checks the README's copy against the same files.

    python scripts/settle_table.py docs/results/runs/census_group1_leakage_free_full census_group1_leakage_free_full.rep1
    python scripts/settle_table.py --update docs/results/README.md

``--update`` rewrites, in place, the table after every line ``Snapshot of `STUDY.repN` (...)`` of that README from
the export beside it (``docs/results/runs/STUDY``), so a session's snapshot needs no hand-copied table; the text
around the tables (times, narrative) stays the writer's.
"""

from __future__ import annotations

import json
import re
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


def update(readme: Path) -> list[str]:
    """Rewrite every snapshot table of ``readme`` from its export; the names of the tables rewritten."""
    lines = readme.read_text().splitlines()
    done: list[str] = []
    i = 0
    while i < len(lines):
        m = re.match(r"Snapshot of `([\w.]+)`", lines[i])
        if m:
            start = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("|"))
            end = next((j for j in range(start, len(lines)) if not lines[j].startswith("|")), len(lines))
            name = m.group(1)
            lines[start:end] = rows(readme.parent / "runs" / name.split(".")[0], name)
            done.append(name)
            i = start
        i += 1
    readme.write_text("\n".join(lines) + "\n")
    return done


if __name__ == "__main__":
    if sys.argv[1] == "--update":
        print("updated:", ", ".join(update(Path(sys.argv[2]))))
    else:
        print("\n".join(rows(Path(sys.argv[1]), sys.argv[2])))
