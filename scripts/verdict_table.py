"""The results README's verdict tables of a finished census report, one per task, from the report's CSVs: per
architecture the seeds, the collapsed seeds (the report's own rule over the exported seed metrics), the mean test
metric with its 95% BCa interval, the gap to the best with its interval and Holm p, and the gap and Holm p with the
collapsed seeds left out. tests/test_results_docs.py checks the README's copies against the same files, so a
headline's tables are printed, not typed.

    python scripts/verdict_table.py docs/results/census_group1_leakage_free_full income marital

The first argument is the report's stem (its CSVs are ``STEM_comparison.csv``, ``STEM_verdict.csv`` and
``STEM_verdict_without_collapsed.csv``; the tuned configurations' seed metrics are read from
``docs/results/runs/NAME/*.rep*_seed_metrics.csv`` beside it), the rest the tasks, in the order their tables are printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hpo.report.verdict import collapse_mask

LABELS = {
    "single_task": "Single-Task",
    "shared_bottom": "Shared-Bottom",
    "omoe": "OMoE",
    "mmoe": "MMoE",
    "l2_constrained": "L2-Constrained",
    "cross_stitch": "Cross-Stitch",
    "tensor_factorization": "Tensor-Factorization",
    "cgc": "CGC",
    "ple": "PLE",
    "dselect_k": "DSelect-k",
    "adatt": "AdaTT",
    "esmm": "ESMM",
    "aitm": "AITM",
}
HEADER = (
    "| architecture | seeds | collapsed | mean test AUC [95% BCa] | gap to the best [95% BCa] | Holm p "
    "| without collapsed seeds: gap | Holm p |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _p(p: float) -> str:
    return f"{p:.2g}"


def _gap(x: float) -> str:
    return f"{x:+.5f}" if x > 0 else f"{x:.5f}"


def table(stem: Path, task: str, metric: str = "auc") -> str:
    """One task's verdict table, architectures in the order the comparison lists them."""
    comp = pd.read_csv(f"{stem}_comparison.csv").query("task == @task and metric == @metric")
    verdict = pd.read_csv(f"{stem}_verdict.csv").query("task == @task").set_index("architecture")
    without = (
        pd.read_csv(f"{stem}_verdict_without_collapsed.csv").query("task == @task").set_index("architecture")
    )
    seeds = pd.concat(
        pd.read_csv(f) for f in (stem.parent / "runs" / stem.name).glob("*.rep*_seed_metrics.csv")
    )
    seeds = seeds.query("split == 'test' and metric == @metric and task == @task")
    rows = [HEADER]
    for c in comp.itertuples():
        values = seeds[seeds.architecture == c.architecture].value.to_numpy(float)
        collapsed = int(np.sum(collapse_mask(values, metric)[0]))
        cells = [LABELS.get(c.architecture, c.architecture), str(c.seeds), str(collapsed)]
        cells.append(f"{c.mean:.5f} [{c.ci95_low:.5f}, {c.ci95_high:.5f}]")
        if c.architecture not in verdict.index:  # the best: every gap is to it
            cells += ["best", "", "best", ""]
        else:
            v, w = verdict.loc[c.architecture], without.loc[c.architecture]
            cells += [f"{_gap(v.gap)} [{_gap(v.ci_low)}, {_gap(v.ci_high)}]", _p(v.holm_p)]
            cells += [_gap(w.gap), _p(w.holm_p)]
        rows.append("|" + "|".join(f" {c} " if c else " " for c in cells) + "|")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    stem, tasks = Path(argv[0]), argv[1:]
    if not Path(f"{stem}_verdict.csv").exists():
        print(f"{stem}_verdict.csv: no such file (a progress report has no verdict; render the final report)")
        return 2
    print("\n\n".join(table(stem, task) for task in tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
