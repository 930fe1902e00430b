"""What a training checkpoint costs: writing a run's state against training one census epoch, one thread.

A retraining chunk writes its state (weights, best weights, Adam's moments, generators, curves) at the end of an
epoch, at most once a minute (``hpo.training.checkpoint.EVERY``), so that a stopped worker's retry resumes there.
For each Shared-Bottom width (one seed, census-shaped rows, batch 1024) this measures, in one run:

* ``{model}_epoch_s``: one epoch of the census's 199,523 training rows (steps timed on the bench's rows, scaled);
* ``{model}_save_s`` and ``{model}_mb``: one :meth:`Checkpoint.save` of the run's state, and its size;
* ``{model}_save_vs_epoch``: the ratio: the overhead when every epoch is written (epochs over a minute);
* ``{model}_overhead``: save / max(epoch, 60 s): the share of training time spent writing under the once-a-minute cap.

    python bench/checkpoint.py [--rounds 3] [--widths 256 2048] [--layers 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chunk import BATCH, dataset

from _shapes import CENSUS_ROWS, median_rounds

from hpo.models import create_model
from hpo.training import TrainConfig
from hpo.training import threads as hpo_threads
from hpo.training.checkpoint import EVERY, Checkpoint
from hpo.training.trainer import _Run

STEPS = 8


def measure(width: int, layers: int, rounds: int) -> dict[str, float]:
    ds = dataset()
    model = create_model(
        "shared_bottom", ds.spec, ds.tasks, seeds=[0], bottom_units=(width,) * layers, tower_units=(64,)
    )
    cfg = TrainConfig(lr=1e-3, batch_size=BATCH, epochs=1, max_steps=10**9, patience=None, device="cpu")
    run = _Run(model, ds, cfg, [0], [0])
    split = ds.train_split(1)
    idx = [rows.unsqueeze(0) for rows in torch.arange(len(split)).split(BATCH)]  # (replicas, batch)
    folder = Path(tempfile.mkdtemp())
    ckpt = Checkpoint(folder / "c.pt", "bench", every=0)

    def steps() -> float:
        start = time.perf_counter()
        for i in range(STEPS):
            run._step(split, idx[i])
        return (time.perf_counter() - start) / STEPS

    def save() -> float:
        start = time.perf_counter()
        ckpt.save(1, run.state, force=True)
        return time.perf_counter() - start

    timed = median_rounds({"step": steps, "save": save}, rounds)
    epoch = timed["step"] * CENSUS_ROWS / BATCH
    name = f"sb{layers}x{width}"
    out = {
        f"{name}_epoch_s": epoch,
        f"{name}_save_s": timed["save"],
        f"{name}_mb": ckpt.path.stat().st_size / 1e6,
        f"{name}_save_vs_epoch": timed["save"] / epoch,
        f"{name}_overhead": timed["save"] / max(epoch, EVERY),
    }
    ckpt.clear()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    hpo_threads.for_trial(1)  # as a census worker runs
    results: dict[str, float] = {}
    for width in args.widths:
        results |= measure(width, args.layers, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for k, v in results.items():
            print(f"{k:32s} {v:.4g}")


if __name__ == "__main__":
    main()
