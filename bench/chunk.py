"""Seeds per vectorised chunk on the CPU: per-seed step time against the chunk size, over model widths.

A retrain (or probe) chunk trains R seeds as one vectorised model. At the paper's sizes this is many times faster
than R lone runs (PROFILE.md, second pass): a step of one small replica is mostly per-operation overhead, which R
replicas share. At the 2048-unit widths of the full search spaces one replica's step is already large products
and elementwise passes over megabytes of activations; R replicas multiply the working set without saving any
overhead, and the step falls out of the caches. This bench measures where that turns, with the real trainer
(``hpo.training.train`` for a fixed number of steps on census-shaped rows, one thread as a worker runs it):

* ``sb{W}`` Shared-Bottom with one W-unit bottom and towers of 64; ``mmoe{W}`` MMoE with 8 experts of W/8 units
  (W units per layer in all) and towers of 64;
* for each, seconds per seed-step at R = 1, 4, 16 and 32 seeds, and the ratio ``{model}_r{R}_vs_r1`` (per-seed
  step time at R over that at R = 1; below 1 the chunk is faster per seed);
* ``activation_mib``: the per-seed activation estimate the chunk rule reads (``hpo.training.memory``), so the
  turning point can be read against it.

With ``--tuned STUDY_YAML STORAGE STUDY_NAME`` (repeatable) it measures a tuning study's best configuration on
its study's real dataset instead, e.g. the census snapshots under docs/results/runs/ (gunzip first).

Every candidate runs once per round, interleaved, after one untimed run; medians of the rounds are compared.

    python bench/chunk.py [--rounds 3] [--widths 128 512 2048] [--replicas 1 4 16 32] [--kinds sb mmoe paper]
                          [--tuned STUDY_YAML STORAGE STUDY_NAME ...] [--steps N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import CENSUS_SPEC, census_like, median_rounds

from hpo.config.study import load_study
from hpo.data import Split, TabularDataset
from hpo.models import TaskSpec, create_model, probe_model
from hpo.search.retrain import best_trial
from hpo.search.studies import load_study_dataset
from hpo.storage import keys
from hpo.training import TrainConfig, train
from hpo.training.memory import activation_bytes_per_replica

TASKS = (TaskSpec("income"), TaskSpec("marital"))
ROWS = 65_536  # enough rows that no step count below wraps an epoch
BATCH = 1024


def dataset() -> TabularDataset:
    feats, y = census_like(ROWS)
    small, ys = census_like(BATCH, seed=1)
    splits = {
        "train": Split(feats.cont[0], feats.cat[0], y),
        "valid": Split(small.cont[0], small.cat[0], ys),
        "test": Split(small.cont[0], small.cat[0], ys),
    }
    return TabularDataset("census-shaped", CENSUS_SPEC, TASKS, splits)


def hyper(kind: str, width: int) -> tuple[str, dict[str, Any]]:
    if kind == "sb":
        return "shared_bottom", {"bottom_units": (width,), "tower_units": (64,)}
    if kind == "paper":  # the MMoE paper's census size: towers of 8
        return "mmoe", {"n_experts": 8, "expert_units": (width // 8,), "tower_units": (8,)}
    return "mmoe", {"n_experts": 8, "expert_units": (width // 8,), "tower_units": (64,)}


def steps_for(width: int) -> int:
    """The same step count at every chunk size of a width (about a second per seed at R = 1 here)."""
    return max(2, 24 * 128 // width)


def _run(ds: TabularDataset, arch: str, hp: dict[str, Any], replicas: int, steps: int, lr: float) -> float:
    model = create_model(arch, ds.spec, ds.tasks, replicas=replicas, seeds=list(range(replicas)), **hp)
    cfg = TrainConfig(lr=lr, batch_size=BATCH, epochs=1, max_steps=steps, patience=None, device="cpu")
    start = time.perf_counter()
    train(model, ds, cfg, evaluate_splits=("valid",))
    return time.perf_counter() - start


def per_seed_step(
    ds: TabularDataset, arch: str, hp: dict[str, Any], replicas: int, steps: int, lr: float = 1e-3
) -> float:
    """Seconds per seed per step: runs of S and 2S steps, differenced, so that what a run pays once (building
    the model, the final evaluation) is left out at every chunk size alike."""
    short = _run(ds, arch, hp, replicas, steps, lr)
    return (_run(ds, arch, hp, replicas, 2 * steps, lr) - short) / (steps * replicas)


def tuned(
    study_file: str, storage: str, study_name: str
) -> tuple[TabularDataset, str, dict[str, Any], float]:
    """A tuning study's best configuration and its study's real dataset (e.g. a census snapshot from
    docs/results/runs/, gunzipped)."""
    spec = load_study(study_file)
    best = best_trial(optuna.load_study(study_name=study_name, storage=storage))
    attrs = keys.plain(best.user_attrs)
    hp = {k: tuple(v) if isinstance(v, list) else v for k, v in attrs[keys.MODEL_CONFIG].items()}
    ds = load_study_dataset(spec)
    # a batch of validation rows: every epoch's end evaluates them for each seed, a cost the differencing of S and
    # 2S steps leaves out anyway and that would otherwise dominate the bench's wall time
    held = {
        k: Split(s.cont[:BATCH], s.cat[:BATCH], s.y[:BATCH]) for k, s in ds.splits.items() if k != "train"
    }
    ds = TabularDataset(ds.name, ds.spec, ds.tasks, {"train": ds.splits["train"], **held})
    return ds, attrs[keys.ARCHITECTURE], hp, float(attrs[keys.TRAIN_CONFIG]["lr"])


def report(name: str, mib: float, times: dict[int, float], ratios: dict[str, float]) -> None:
    line = " ".join(f"R={r}: {t * 1e3:7.2f} ms" for r, t in times.items())
    print(f"{name:9s} activation {mib:5.1f} MiB per seed | per seed-step {line}", flush=True)
    first = next(iter(times))
    for r, t in times.items():
        if r != first:
            ratios[f"{name}_r{r}_vs_r{first}"] = round(t / times[first], 3)


def _activation_mib(ds: TabularDataset, arch: str, hp: dict[str, Any]) -> float:
    units = [u.units for u in probe_model(arch, ds.spec, ds.tasks, **hp).layer_units()]
    return activation_bytes_per_replica(units, BATCH) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 512, 2048])
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--kinds", nargs="+", default=["sb", "mmoe"], choices=["sb", "mmoe", "paper"])
    ap.add_argument("--tuned", nargs=3, metavar=("STUDY_YAML", "STORAGE", "STUDY_NAME"), action="append")
    ap.add_argument("--steps", type=int, default=None, help="steps per timed run (default: by width)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as a worker with one core runs it (hpo.training.threads)
    ratios: dict[str, float] = {}
    candidates: list[tuple[str, TabularDataset, str, dict[str, Any], float, int]] = []
    for study_file, storage, study_name in args.tuned or []:
        tds, arch, hp, lr = tuned(study_file, storage, study_name)
        candidates.append((study_name, tds, arch, hp, lr, args.steps or 2))
    if not args.tuned:
        ds = dataset()
        for kind in args.kinds:
            for width in args.widths:
                arch, hp = hyper(kind, width)
                candidates.append((f"{kind}{width}", ds, arch, hp, 1e-3, args.steps or steps_for(width)))
    for name, cds, arch, hp, lr, steps in candidates:
        fns = {
            r: (lambda r=r: per_seed_step(cds, arch, hp, r, steps, lr))  # type: ignore[misc]
            for r in args.replicas
        }
        times = median_rounds(fns, args.rounds)  # type: ignore[arg-type]
        report(name, _activation_mib(cds, arch, hp), times, ratios)
    for k, v in ratios.items():
        print(f"{k:24s} {v:6.3f}")
    if args.json:
        print(json.dumps(ratios))


if __name__ == "__main__":
    main()
