"""``training.amp`` (bf16 autocast of the training steps) against float32, per model size, and what it costs in AUC.

Why: on a CPU with AVX512-BF16 or AMX (Intel Sapphire Rapids and later; this project's CI machine has both),
oneDNN multiplies bf16 matrices in hardware, and the wide layers of the 2048-unit search spaces spend nearly all
of a step in matrix products. Whether that pays depends on the model's width (a paper-size MMoE of 8 x 16 units
is dominated by elementwise work and the fused kernels, which bf16 does not speed) and on the thread count, so
the advice in the docs comes from this run. Two parts:

* speed: ``--steps`` optimiser steps (batch 1024) on census-shaped rows (the paper's column counts), per size and
  precision, interleaved rounds, median, printed as seconds per census epoch (195 steps) and as the ratio
  float32 / bf16 (above 1: bf16 is faster);
* quality (``--quality``): the real census-income data, group 1, leakage-free: the same seeds trained in both
  precisions (vectorised, early stopping on validation income AUC), test income AUC per seed and the mean
  difference with its spread. Evaluation is float32 in both (the trainer's rule), so only training differs.

    python bench/amp.py [--rounds 3] [--steps 40] [--threads 1] [--quality | --quality-only] [--device cpu|cuda]
                        [--json]

Measured on this project's 2-core CPU (AVX512-BF16 and AMX), one thread, beside two census workers, 2026-12-06
(bench/PROFILE.md, twentieth pass): float32 / bf16 per census epoch 0.92 (paper-size MMoE), 1.09 (MMoE 8 x 256),
1.14 (Shared-Bottom 512), 1.10 (Shared-Bottom 2048), 2.85 (Shared-Bottom 3 x 2048); test income AUC of
Shared-Bottom 3 x 512 over 4 seeds: bf16 - float32 = +0.00003 on average, against a seed std of 0.00029.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import CENSUS_ROWS, median_rounds
from train import census_dataset

from hpo.data import TabularDataset
from hpo.models import create_model
from hpo.training import TrainConfig, train
from hpo.training.trainer import cpu_has_native_bf16

# name -> (architecture, hyperparameters): from the paper's size to the 2048-unit budget's widest
SIZES: dict[str, tuple[str, dict[str, Any]]] = {
    "mmoe 8x16 (paper)": ("mmoe", {"n_experts": 8, "expert_units": (16,), "tower_units": (8,)}),
    "mmoe 8x256": ("mmoe", {"n_experts": 8, "expert_units": (256,), "tower_units": (64,)}),
    "shared_bottom 512": ("shared_bottom", {"bottom_units": (512,), "tower_units": (64,)}),
    "shared_bottom 2048": ("shared_bottom", {"bottom_units": (2048,), "tower_units": (64,)}),
    "shared_bottom 3x2048": ("shared_bottom", {"bottom_units": (2048, 2048, 2048), "tower_units": (2,)}),
}


STEPS_PER_EPOCH = math.ceil(CENSUS_ROWS / 1024)


def epoch_seconds(
    ds: TabularDataset, arch: str, hyper: dict[str, Any], amp: bool, device: str, steps: int
) -> float:
    """Wall time of ``steps`` training steps scaled to a census epoch (the end-of-epoch validation on 2,048 rows
    is in it, in float32 for both)."""
    model = create_model(arch, ds.spec, ds.tasks, seeds=[0], **hyper)
    cfg = TrainConfig(
        lr=1e-3, batch_size=1024, epochs=1, max_steps=steps, patience=None, device=device, amp=amp
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    train(model, ds, cfg, evaluate_splits=())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t) * STEPS_PER_EPOCH / steps


def speed(rounds: int, device: str, steps: int) -> list[dict[str, Any]]:
    ds = census_dataset(torch.device(device))
    rows = []
    for name, (arch, hyper) in SIZES.items():
        fns = {
            "float32": lambda a=arch, h=hyper: epoch_seconds(ds, a, h, False, device, steps),
            "bf16": lambda a=arch, h=hyper: epoch_seconds(ds, a, h, True, device, steps),
        }
        med = median_rounds(fns, rounds)
        rows.append({"size": name, **med, "float32/bf16": med["float32"] / med["bf16"]})
        print(
            f"{name:<22} float32 {med['float32']:7.2f} s  bf16 {med['bf16']:7.2f} s"
            f"  ratio {med['float32'] / med['bf16']:5.2f}",
            flush=True,
        )
    return rows


def quality(device: str, seeds: int = 4, epochs: int = 8) -> dict[str, Any]:
    """Test income AUC of the same seeds trained in both precisions on the real census data."""
    from hpo.data.census import load_census

    ds = load_census(1, variant="leakage-free").to(torch.device(device))
    arch, hyper = (
        "shared_bottom",
        {"bottom_units": (512, 512, 512), "tower_units": (64,)},
    )  # bf16 in 2 of 3 layers
    auc: dict[str, list[float]] = {}
    for amp in (False, True):
        model = create_model(arch, ds.spec, ds.tasks, replicas=seeds, seeds=list(range(seeds)), **hyper)
        cfg = TrainConfig(lr=1e-3, batch_size=1024, epochs=epochs, patience=3, device=device, amp=amp)
        res = train(model, ds, cfg, init_seeds=list(range(seeds)), data_seeds=list(range(seeds)))
        auc["bf16" if amp else "float32"] = [r.metric("test", ds.tasks[0].name, "auc") for r in res]
    diff = [b - a for a, b in zip(auc["float32"], auc["bf16"], strict=True)]
    out = {
        "model": f"{arch} {hyper}",
        "epochs": epochs,
        **auc,
        "mean bf16 - float32": statistics.mean(diff),
        "seed spread (float32 std)": statistics.stdev(auc["float32"]),
    }
    print(f"quality, {arch} {hyper}, {seeds} seeds, up to {epochs} epochs (test income AUC):")
    for k in ("float32", "bf16"):
        print(f"  {k:<8} " + " ".join(f"{v:.4f}" for v in auc[k]))
    print(
        f"  mean difference bf16 - float32 {out['mean bf16 - float32']:+.5f};"
        f" float32 seed std {out['seed spread (float32 std)']:.5f}"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="optimiser steps timed per candidate and round")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a census worker runs one)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--quality", action="store_true", help="also train on the real census data in both precisions"
    )
    ap.add_argument("--quality-only", action="store_true", help="the quality part alone")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    native = cpu_has_native_bf16()
    print(
        f"device {args.device}, {args.threads} thread(s); CPU bf16 in hardware (AVX512-BF16 or AMX): {native}",
        flush=True,
    )
    if args.quality_only:
        quality(args.device)
        return
    result: dict[str, Any] = {
        "threads": args.threads,
        "cpu_native_bf16": native,
        "speed": speed(args.rounds, args.device, args.steps),
    }
    if args.quality:
        result["quality"] = quality(args.device)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
