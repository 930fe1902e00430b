"""What the full synthetic sweep (studies/paper_synthetic_correlation.yaml) costs on this machine's CPU.

Timing the whole sweep here takes hours, so this measures its unit costs and multiplies them by the work the full
run actually did (its epoch counts, committed in docs/results/): per architecture, the cost of one replica-epoch
in a 200-replica vectorised retrain (10,000 rows, batch 256, validation every epoch) and of one epoch of a lone
run (the learning-rate grid's trials), and the time to draw 200 datasets. Each cost is the mean of ``--epochs``
timed epochs after one warm-up epoch; the retrain cost per replica-epoch was measured flat from 8 to 200 replicas
(bench/PROFILE.md), so it also holds after finished replicas are cut out.

    python scripts/project_synthetic_cpu.py [--epochs 3] [--out docs/results/paper_synthetic_cpu_projection.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hpo.config.study import load_study
from hpo.data import TabularDataset
from hpo.models import MTLModel, create_model
from hpo.search.retrain import fresh_datasets
from hpo.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
HYPER: dict[str, dict[str, Any]] = {
    "shared_bottom": {"bottom_units": (113,), "tower_units": (8,)},
    "omoe": {"n_experts": 8, "expert_units": (16,), "tower_units": (8,)},
    "mmoe": {"n_experts": 8, "expert_units": (16,), "tower_units": (8,)},
}
RUNS = 200


def epoch_cost(arch: str, data: TabularDataset, replicas: int, cfg: TrainConfig) -> float:
    """Seconds per replica-epoch: one warm-up epoch, then ``cfg.epochs`` timed ones on a fresh model."""

    def model() -> MTLModel:
        return create_model(
            arch, data.spec, data.tasks, replicas=replicas, seeds=list(range(replicas)), **HYPER[arch]
        )

    train(model(), data, cfg.model_copy(update={"epochs": 1}), evaluate_splits=("valid",))
    t0 = time.perf_counter()
    train(model(), data, cfg, evaluate_splits=("valid",))
    return (time.perf_counter() - t0) / cfg.epochs / replicas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    spec = load_study(ROOT / "studies/paper_synthetic_correlation.yaml").expand()[0]
    t0 = time.perf_counter()
    ds = fresh_datasets(spec, list(range(RUNS)))
    datagen = time.perf_counter() - t0
    cfg = TrainConfig(lr=1e-3, batch_size=256, epochs=args.epochs, patience=None, device="cpu")
    cost: dict[str, float] = {}
    lone: dict[str, float] = {}
    for arch in HYPER:
        cost[arch] = epoch_cost(arch, ds, RUNS, cfg)
        lone[arch] = epoch_cost(arch, ds.select_replicas([0]), 1, cfg)
        print(
            f"{arch}: {cost[arch] * 1e3:.1f} ms per replica-epoch ({RUNS} replicas), lone {lone[arch] * 1e3:.1f} ms"
        )
    epochs = pd.read_csv(ROOT / "docs/results/paper_synthetic_epochs.csv")
    epochs = epochs[epochs.spec.str.startswith("paper_synthetic_correlation.")]
    trials = pd.read_csv(ROOT / "docs/results/paper_synthetic_correlation_trials.csv")
    retrain = sum(epochs[epochs.architecture == a].epochs_run.sum() * c for a, c in cost.items())
    grid = sum(trials[trials.architecture == a].epochs_run.sum() * c for a, c in lone.items())
    cells = epochs.spec.nunique() * epochs.architecture.nunique()
    result = {
        "machine": f"cpu, {torch.get_num_threads()} threads",
        "retrain_replica_epochs": int(epochs.epochs_run.sum()),
        "grid_epochs": int(trials.epochs_run.sum()),
        "cost_ms_per_replica_epoch": {a: round(c * 1e3, 2) for a, c in cost.items()},
        "lone_ms_per_epoch": {a: round(c * 1e3, 2) for a, c in lone.items()},
        "datagen_s_per_cell": round(datagen, 1),
        "retrain_min": round(retrain / 60, 1),
        "grid_min": round(grid / 60, 1),
        "datagen_min": round(datagen * cells / 60, 1),
        "total_min": round((retrain + grid + datagen * cells) / 60, 1),
    }
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
