"""``training.compile`` against eager, per model size: one census-shaped epoch each, interleaved rounds.

Why a benchmark of its own: whether ``torch.compile`` pays depends on the model's shape (at which point
Inductor's generated loops beat eager's calls, and which extern kernels dominate), so the documented advice
("compile pays at these sizes") has to come from a run that anyone can repeat. Three candidates per size:

* ``eager``: ``hpo.training.train`` as it runs by default;
* ``compiled``: ``training.compile: true`` (the trainer's compile: partitioner recomputes views, see
  ``hpo.training.trainer._compiled``);
* ``plain``: the same, through a bare ``torch.compile`` (the revision before the sixth pass of
  ``bench/PROFILE.md``), to show what the partitioner setting is worth; in rounds of its own after the other two
  (Dynamo's cache would otherwise hand it the trainer's graph).

The warm-up round pays each shape's compile; its wall time is printed as ``first`` (a worker pays it once per
shape and process; Inductor's on-disk cache shortens it in later processes).

``alone`` is the eager epoch again, measured in a process of its own that never compiles anything: in a process
where compiled code has run, eager epochs were measured slower (the paper-size MMoE 0.72 s interleaved against
0.35 s alone, 2026-12-03), which flattered the compiled candidate. The speed-up is taken against ``alone``.

    python bench/compile.py [--rounds 2] [--no-plain] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import CENSUS_ROWS, median_rounds, timed
from train import census_dataset

import hpo.training.trainer as trainer
from hpo.data import TabularDataset
from hpo.models import create_model
from hpo.training import TrainConfig, train

# name -> (architecture, replicas, hyperparameters)
SIZES: dict[str, tuple[str, int, dict[str, Any]]] = {
    "mmoe 8x16 (paper)": ("mmoe", 1, {"n_experts": 8, "expert_units": (16,), "tower_units": (8,)}),
    "mmoe 8x16, 16 seeds": ("mmoe", 16, {"n_experts": 8, "expert_units": (16,), "tower_units": (8,)}),
    "mmoe 8x32": ("mmoe", 1, {"n_experts": 8, "expert_units": (32,), "tower_units": (8,)}),
    "mmoe 8x64": ("mmoe", 1, {"n_experts": 8, "expert_units": (64,), "tower_units": (16,)}),
    "mmoe 8x128": ("mmoe", 1, {"n_experts": 8, "expert_units": (128,), "tower_units": (32,)}),
    "mmoe 8x256 (budget max)": ("mmoe", 1, {"n_experts": 8, "expert_units": (256,), "tower_units": (64,)}),
    "shared_bottom 2048": ("shared_bottom", 1, {"bottom_units": (2048,), "tower_units": (64,)}),
}


def epoch(ds: TabularDataset, arch: str, replicas: int, hyper: dict[str, Any], mode: str) -> None:
    model = create_model(arch, ds.spec, ds.tasks, replicas=replicas, seeds=list(range(replicas)), **hyper)
    cfg = TrainConfig(
        lr=1e-3, batch_size=1024, epochs=1, patience=None, device="cpu", compile=mode != "eager"
    )
    if mode == "plain":
        original = trainer._compiled
        trainer._compiled = torch.compile
        try:
            train(model, ds, cfg, evaluate_splits=("valid",))
        finally:
            trainer._compiled = original
    else:
        train(model, ds, cfg, evaluate_splits=("valid",))


def eager_alone(name: str, rounds: int) -> float:
    """Median eager epoch of ``name`` in a fresh process that compiles nothing (see the module's docstring)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--eager-alone", name, "--rounds", str(rounds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-plain", action="store_true", help="leave out the bare torch.compile candidate")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--eager-alone", metavar="SIZE", help=argparse.SUPPRESS
    )  # the child process of eager_alone
    args = ap.parse_args()
    ds = census_dataset(torch.device("cpu"))
    if args.eager_alone:
        arch, replicas, hyper = SIZES[args.eager_alone]
        epoch(ds, arch, replicas, hyper, "eager")
        times = [timed(lambda: epoch(ds, arch, replicas, hyper, "eager")) for _ in range(args.rounds)]
        print(json.dumps({"seconds": statistics.median(times)}))
        return
    modes = ["eager", "compiled"] + ([] if args.no_plain else ["plain"]) + ["alone"]
    print(
        f"one census-shaped epoch ({CENSUS_ROWS:,} rows, batch 1024), {torch.get_num_threads()} threads, "
        f"seconds, median of {args.rounds} interleaved rounds after a warm-up that pays the compile; alone: eager in "
        "a process that compiles nothing"
    )
    print(f"{'size':<26}" + "".join(f"{m:>10}" for m in modes) + f"{'first':>8}{'speed-up':>10}")
    ratios: dict[str, float] = {}
    for name, (arch, replicas, hyper) in SIZES.items():
        torch._dynamo.reset()  # each size's compile is paid and timed in its own warm-up
        first: dict[str, float] = {}

        def candidate(
            mode: str, a: str = arch, r: int = replicas, h: dict[str, Any] = hyper
        ) -> Callable[[], float]:
            def run() -> float:
                seconds = timed(lambda: epoch(ds, a, r, h, mode))
                first.setdefault(mode, seconds)
                return seconds

            return run

        med = median_rounds({m: candidate(m) for m in ("eager", "compiled")}, args.rounds)
        if not args.no_plain:
            # Dynamo's guards do not see the partitioner's setting, so the bare compile must not find the trainer's
            # graph in the cache: it runs after a reset, in rounds of its own
            torch._dynamo.reset()
            med |= median_rounds({"plain": candidate("plain")}, args.rounds)
        med["alone"] = eager_alone(name, args.rounds)
        ratios[name] = med["alone"] / med["compiled"]
        cells = "".join(f"{med[m]:>10.3f}" for m in modes)
        print(f"{name:<26}{cells}{first['compiled']:>8.1f}{ratios[name]:>9.2f}x")
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))


if __name__ == "__main__":
    main()
