"""The results README's table of a tuning-until-settled run in progress, from its export (``hpo export
--partial``, as ``scripts/census_full.sh snapshot`` writes it): per architecture of one replicate, the complete
trials, every judgement of the settled rule (trials: gain of the last doubling [upper end of its 95% interval] ->
decision), the tolerance, the best configuration's bound hits at the latest judgement and the ranges the rule
widened. tests/test_results_docs.py checks the README's copy against the same files.

    python scripts/settle_table.py docs/results/runs/census_group1_leakage_free_full census_group1_leakage_free_full.rep1
    python scripts/settle_table.py --update docs/results/README.md

``--update`` rewrites, in place, the table after every line ``Snapshot of `STUDY.repN` (...)`` (or ``Final state of``, once the study finished) of that README from
the export beside it (``docs/results/runs/STUDY``), and the table after every line ``Retraining of `STUDY` (...)``:
per tuning replicate (and the default configurations) and architecture, the seeds trained of those planned and
each seed's wall time (minimum, median, maximum of ``hpo.wall_time`` over the seeds of its chunk). So a session's snapshot needs no hand-copied
table or count; the text around the tables (times, narrative) stays the writer's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.config.study import load_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"

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


def _seconds(values: pd.Series) -> str:
    if values.empty:
        return "-"
    return " / ".join(f"{v:,.0f}" for v in (values.min(), values.median(), values.max()))


def retrain_rows(export: Path, study: str) -> list[str]:
    """Seeds trained so far, of those the study plans, per tuning run and architecture, with their wall times."""
    spec = load_study(STUDIES / f"{study}.yaml")
    planned = spec.retrain.seeds
    out = [
        "| tuning run | architecture | seeds trained | wall time a seed, s (min / median / max) |",
        "| --- | --- | --- | --- |",
    ]
    runs = [(f"replicate {r}", f"{study}.rep{r}", r) for r in range(1, spec.replicates + 1)]
    if spec.retrain.default:
        runs.append(("default configuration", f"{study}.default", None))
    for label, name, replicate in runs:
        path = export / f"{name}_seed_results.csv"
        seeds = (
            pd.read_csv(path)
            if path.exists()
            else pd.DataFrame(columns=["architecture", "wall_time", "replicas_in_run"])
        )
        # a chunk of k seeds trains them as one model: each seed row carries the chunk's time, a seed's is 1/k
        for arch in spec.architectures:
            if replicate is not None and replicate > (arch.replicates or spec.replicates):
                continue
            mine = seeds[seeds.architecture == arch.name]
            out.append(
                f"| {label} | {LABELS.get(arch.name, arch.name)} | {len(mine)} of {planned} "
                f"| {_seconds((mine.wall_time / mine.replicas_in_run).dropna())} |"
            )
    return out


def update(readme: Path) -> list[str]:
    """Rewrite every snapshot and retraining table of ``readme`` from its export; the names of those rewritten."""
    lines = readme.read_text().splitlines()
    done: list[str] = []
    i = 0
    while i < len(lines):
        snapshot = re.match(r"(?:Snapshot|Final state) of `([\w.]+)`", lines[i])
        retraining = re.match(r"Retraining of `([\w.]+)`", lines[i])
        i += 1
        if not (snapshot or retraining):
            continue
        start = next(j for j in range(i, len(lines)) if lines[j].startswith("|"))
        end = next((j for j in range(start, len(lines)) if not lines[j].startswith("|")), len(lines))
        if snapshot:
            name = snapshot.group(1)
            table = rows(readme.parent / "runs" / name.split(".")[0], name)
            done.append(name)
        else:
            name = retraining.group(1)  # type: ignore[union-attr]
            table = retrain_rows(readme.parent / "runs" / name, name)
            done.append(f"{name} (retraining)")
        lines[start:end] = table
        i = start + len(table)
    readme.write_text("\n".join(lines) + "\n")
    return done


if __name__ == "__main__":
    if sys.argv[1] == "--update":
        print("updated:", ", ".join(update(Path(sys.argv[2]))))
    else:
        print("\n".join(rows(Path(sys.argv[1]), sys.argv[2])))
