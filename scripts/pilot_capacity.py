"""Pilot of issue 36's capacity-limited regime: 8 MMoE runs at p = 0.5 (the paper's sizes, Adam lr 1e-3, patience 20,
400-epoch cap), trained on a fixed 10,000 rows and on a stream of fresh rows; prints one JSON line per regime.
Run: python scripts/pilot_capacity.py > docs/results/capacity_pilot.json"""

import json
import time

import torch

from hpo.data import SyntheticConfig, TabularDataset, make_synthetic
from hpo.models import create_model
from hpo.training import TrainConfig, train

torch.set_num_threads(2)
out = {}
for stream in (False, True):
    cfgs = [
        SyntheticConfig(p=0.5, d=100, n_train=10000, n_valid=2000, n_test=2000, seed=100 + s, stream=stream)
        for s in range(8)
    ]
    ds = TabularDataset.stack([make_synthetic(c) for c in cfgs])
    model = create_model(
        "mmoe",
        ds.spec,
        ds.tasks,
        replicas=8,
        seeds=list(range(8)),
        n_experts=8,
        expert_units=(16,),
        tower_units=(8,),
    )
    cfg = TrainConfig(lr=1e-3, batch_size=256, epochs=400, patience=20, device="cpu")
    t = time.perf_counter()
    res = train(model, ds, cfg, init_seeds=list(range(8)))
    wall = time.perf_counter() - t
    epochs = [r.epochs_run for r in res]
    best = [r.best_epoch for r in res]
    test = sorted((r.metric("test", "y1", "mse") + r.metric("test", "y2", "mse")) / 2 for r in res)
    tr = [
        (r.curve[r.best_epoch - 1]["train_loss.y1"] + r.curve[r.best_epoch - 1]["train_loss.y2"]) / 2
        for r in res
    ]
    va = [
        (r.curve[r.best_epoch - 1]["valid_loss.y1"] + r.curve[r.best_epoch - 1]["valid_loss.y2"]) / 2
        for r in res
    ]
    out["stream" if stream else "fixed"] = {
        "wall_s": round(wall, 1),
        "replica_epochs": sum(epochs),
        "s_per_replica_epoch": round(wall / sum(epochs), 4),
        "epochs_run": epochs,
        "best_epoch": best,
        "test_mse_sorted": [round(x, 4) for x in test],
        "train_loss_at_best_per_task": [round(x, 4) for x in tr],
        "valid_loss_at_best_per_task": [round(x, 4) for x in va],
    }
    print(json.dumps(out), flush=True)
