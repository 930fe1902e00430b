"""Rebuild the `hpo export` folder of a sweep study from its committed report files, for a run whose database is gone.

Why: the full-size synthetic studies ran on a lent GPU machine whose SQLite file went with the machine; what was
kept is the report's CSVs (every run's test losses, every grid trial, the chosen learning rates), the per-run epochs
(`paper_synthetic_epochs.csv`) and the report's provenance table. Those hold every row the sweep report reads, so
`hpo report --from-tables` can render them with today's report code. Nothing is invented: each field below comes
from one of those files, and what they did not keep (validation and R^2 metrics per run, the runs' timestamps) is
left out, which the sweep report does not read.

    python scripts/tables_from_sweep_report.py studies/paper_synthetic_correlation.yaml \
        docs/results/paper_synthetic_correlation docs/results/paper_synthetic_epochs.csv /tmp/tables
    hpo report studies/paper_synthetic_correlation.yaml --from-tables /tmp/tables \
        --out docs/results/paper_synthetic_correlation.html
"""

from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

import pandas as pd

from hpo.config.study import load_study
from hpo.report.tables import FORMAT, write_tables


def provenance(report_html: Path) -> dict[str, str]:
    """The report's provenance table (row heading -> text), as the original report printed it."""
    text = report_html.read_text(encoding="utf-8")
    table = text[text.index('<table class="results provenance">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr><th>(.*?)</th><td[^>]*>(.*?)</td></tr>", table, flags=re.S)
    return {html.unescape(k): html.unescape(v) for k, v in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", help="the sweep's study YAML")
    ap.add_argument("stem", help="the committed report without .html (its CSVs are STEM_*.csv)")
    ap.add_argument("epochs", help="per-run epochs CSV (columns spec, architecture, seed, ..., best_epoch)")
    ap.add_argument("out", help="folder to write the export into")
    args = ap.parse_args()
    spec = load_study(args.study)
    assert spec.sweep is not None, f"{args.study}: not a sweep study"
    stem, key = Path(args.stem), spec.sweep.key
    prov = provenance(stem.with_suffix(".html"))
    generator, _, settings = prov["generator"].partition("; settings ")
    trials = pd.read_csv(f"{stem}_trials.csv")
    losses = pd.read_csv(f"{stem}_seed_losses.csv")
    chosen = pd.read_csv(f"{stem}_chosen.csv")
    epochs = pd.read_csv(args.epochs)
    versions = dict(v.rsplit(" ", 1) for v in prov["package versions"].split(", "))
    tasks = [c for c in losses.columns if c not in ("architecture", "seed", "mean over tasks", "value")]
    parts = []
    for sub in spec.expand():
        value = float((sub.sweep_point or {})["value"])
        t = trials[trials[key] == value].drop(columns=[key]).reset_index(drop=True)
        ch = chosen[chosen[key] == value].set_index("architecture")
        runs = epochs[epochs.spec == sub.name].drop(columns=["spec"])
        assert len(runs), f"{args.epochs}: no runs of {sub.name}"
        lr_of = {a: float(str(r.chosen).removeprefix("lr=")) for a, r in ch.iterrows()}
        best = {  # the grid trial whose learning rate was chosen: the configuration every run retrained
            a: t[(t.architecture == a) & (t.param_lr == lr_of[a])].iloc[0]
            if "param_lr" in t
            else t[t.architecture == a].iloc[0]
            for a in lr_of
        }
        results = runs.assign(
            spec=sub.name,
            tuning_trial=runs.architecture.map({a: int(r.number) for a, r in best.items()}),
            reason="",
            parameter_count=runs.architecture.map({a: int(r.parameter_count) for a, r in best.items()}),
            created_at=pd.NaT,
        )
        sel = losses[losses.value == value]
        metrics = pd.concat(
            [
                sel[["architecture", "seed"]].assign(
                    spec=sub.name, split="test", task=task, metric="mse", value=sel[task]
                )
                for task in tasks
            ],
            ignore_index=True,
        )
        config = {**json.loads(settings), key: (sub.sweep_point or {})["value"]}
        attrs = {
            "format": FORMAT,
            "storage": f"{prov['storage'].split(' (not kept')[0]} (not kept; rebuilt from {stem.name}_*.csv)",
            "study_attrs": {
                a.name: {"provenance": {"generator": generator, "config": config}} for a in spec.architectures
            },
            "retrain_attrs": {
                a: {
                    "train_config": {"lr": lr_of[a], "epochs": spec.training.epochs},
                    "tuning_values": [float(ch.loc[a, "validation objective"])],
                    "fresh_data": spec.retrain.fresh_data,
                }
                for a in lr_of
            },
            "directions": ["minimize"],
            "metric_names": [],
            "versions": versions,
            "code_revisions": [r for r in prov["code revision"].split(", ") if r],
        }
        parts += [
            (sub.name, "trials", t),
            (sub.name, "seed_results", results),
            (sub.name, "seed_metrics", metrics),
            (sub.name, "searched", pd.DataFrame({"architecture": list(lr_of)})),
            (sub.name, "attrs", attrs),
        ]
    for path in write_tables(parts, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
