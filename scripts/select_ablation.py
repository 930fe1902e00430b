"""What ``retrain.select`` would have chosen for a study retrained without it: the probe, run as ``hpo retrain`` runs
it (``prepare_select``, the workers' ticket loop, ``selection``), on a copy of the study's database, for the tuning
runs and architectures named, and written as one CSV row per candidate (its tuning value, each probe seed's
validation value, the probe's mean, whether the probe would retrain it, and, where the study retrained that
candidate, its retrained test mean over its seeds).

    python scripts/select_ablation.py studies/census_group1_leakage_free_full.yaml COPY.db OUT.csv \\
        --run rep2:mmoe --run rep2:shared_bottom --candidates 3 --seeds 3

The copy gets the probe studies (``SPEC/ARCH/select``); the study's own database is never written. Interrupted, it
resumes where it stopped (the probe's tickets).
"""

from __future__ import annotations

import argparse
import logging
import math

import pandas as pd

from hpo.config.study import SelectSpec, load_study
from hpo.search.select import SelectObjective, prepare_select, selection
from hpo.search.studies import load_study_dataset
from hpo.search.worker import drain
from hpo.storage.engine import normalise_url, open_storage
from hpo.storage.results import read_seed_metrics, read_seed_results
from hpo.training import resolve_device, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("db", help="a COPY of the study's SQLite database")
    parser.add_argument("out")
    parser.add_argument("--run", action="append", required=True, help="REPLICATE:ARCH, e.g. rep2:mmoe")
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    base = load_study(args.study)
    select = SelectSpec(candidates=args.candidates, seeds=args.seeds)
    url = normalise_url(f"sqlite:///{args.db}")
    storage = open_storage(url, create=False)
    device = resolve_device("cpu")
    threads.install_for(device)
    rows = []
    by_rep = {s.name.rsplit(".", 1)[-1]: s for s in base.expand()}
    for run in args.run:
        rep, arch = run.split(":")
        spec = by_rep[rep]
        spec = spec.model_copy(
            update={
                "retrain": spec.retrain.model_copy(update={"select": select}),
                "architectures": [a for a in spec.architectures if a.name == arch],
            }
        )
        ds = load_study_dataset(spec).to(device)
        probes = prepare_select(spec, storage, ds, url, described=set())
        drain(
            url,
            storage,
            {a: (s, SelectObjective(spec, a, ds, storage, str(device))) for a, s in probes.items()},
        )
        chosen, record = selection(spec, arch, storage)
        task = ds.tasks[0].name  # the objective's task (objective: main)
        metrics = read_seed_metrics(url, spec.name).merge(
            read_seed_results(url, spec.name)[["architecture", "seed", "tuning_trial"]],
            on=["architecture", "seed"],
        )
        retrained = metrics[
            (metrics.architecture == arch)
            & (metrics.split == "test")
            & (metrics.task == task)
            & (metrics.metric == "auc")
        ]
        for rank, c in enumerate(record["candidates"], start=1):
            mine = retrained[retrained.tuning_trial == c["trial"]]
            rows.append(
                {
                    "run": rep,
                    "architecture": arch,
                    "tuning_rank": rank,
                    "tuning_trial": c["trial"],
                    "tuning_value": c["tuning_value"],
                    "probe_values": " ".join(f"{v:.5f}" for v in c["probe_values"]),
                    "probe_mean": c["probe_mean"],
                    "probe_chooses": c["chosen"],
                    "retrained_seeds": len(mine),
                    "retrained_test_mean": float(mine.value.mean()) if len(mine) else math.nan,
                }
            )
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(
            f"{spec.name} {arch}: the probe retrains trial {chosen} (tuning chose {record['best_tuning_trial']})"
        )


if __name__ == "__main__":
    main()
