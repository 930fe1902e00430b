"""The cost of each route for your own architecture: the same MMoE written both ways (``examples/plugins``).

16 seeds of the paper's MMoE (8 experts x 16 units, towers of 8) trained as one vectorised model for one epoch
on census-shaped data (the real column counts and cardinalities, 199,523 rows, batch 1024):

* ``fused``: ``my_mmoe_fused``, written with hpo's fused building blocks (``hpo.models.api``);
* ``module``: ``my_mmoe_module``, a plain ``nn.Module`` run by hpo under ``torch.func.vmap`` (its first layer a
  dense product with the one-hot input, as such modules are usually written);
* ``builtin``: hpo's own ``mmoe``, for reference.

Candidates run interleaved, one epoch each per round; the median of the rounds is compared, so the ratios
are measured in one run. ``--json`` prints the ratios as the last line.

    python bench/plugins.py [--rounds 3] [--seeds 16] [--rows 199523] [--device cpu|cuda] [--json]

Measured on the 2-core CPU machine (2026-11-23, 3 rounds, 2 threads): fused 21.0 s per epoch (152k
seed-examples/s), module 46.5 s (69k), built-in mmoe 19.4 s (165k): the any-module route runs at 0.45x the fast
route's throughput, and the fast-route plugin at 0.92x the built-in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import CENSUS_ROWS, census_like, median_rounds, timed

from hpo.data import Split, TabularDataset
from hpo.models import TaskSpec, create_model, load_plugins
from hpo.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
KW = {
    "my_mmoe_fused": {"n_experts": 8, "expert_units": 16, "tower_units": 8},
    "my_mmoe_module": {"n_experts": 8, "expert_units": 16, "tower_units": 8},
    "mmoe": {"n_experts": 8, "expert_units": (16,), "tower_units": (8,)},
}
NAMES = {"fused": "my_mmoe_fused", "module": "my_mmoe_module", "builtin": "mmoe"}


def dataset(rows: int, device: torch.device) -> TabularDataset:
    feats, y = census_like(rows)
    small, ys = census_like(2048, seed=1)
    assert (
        feats.cont is not None and feats.cat is not None and small.cont is not None and small.cat is not None
    )
    splits = {
        "train": Split(feats.cont[0], feats.cat[0], y),
        "valid": Split(small.cont[0], small.cat[0], ys),
        "test": Split(small.cont[0], small.cat[0], ys),
    }
    from _shapes import CENSUS_SPEC

    return TabularDataset("census-like", CENSUS_SPEC, (TaskSpec("a"), TaskSpec("b")), splits).to(device)


def epoch(name: str, ds: TabularDataset, seeds: int, device: torch.device) -> None:
    model = create_model(
        name, ds.spec, ds.tasks, replicas=seeds, seeds=list(range(seeds)), device=device, **KW[name]
    )
    train(model, ds, TrainConfig(lr=1e-3, batch_size=1024, epochs=1, patience=None, device=str(device)))
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--rows", type=int, default=CENSUS_ROWS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads())) if args.device == "cpu" else None
    device = torch.device(args.device)
    load_plugins(["fused_mmoe.py", "module_mmoe.py"], ROOT / "examples" / "plugins")
    ds = dataset(args.rows, device)
    epoch("my_mmoe_module", ds, 2, device)  # warm-up (first vmap trace, allocator)
    times = median_rounds(
        {k: (lambda n=n: timed(lambda: epoch(n, ds, args.seeds, device))) for k, n in NAMES.items()},
        args.rounds,
    )
    rate = {k: args.seeds * args.rows / t for k, t in times.items()}
    for k, t in times.items():
        print(f"{k:>8}: {t:7.2f} s per epoch, {rate[k] / 1000:8.1f}k seed-examples/s")
    ratios = {
        "module_vs_fused": round(rate["module"] / rate["fused"], 3),
        "fused_vs_builtin": round(rate["fused"] / rate["builtin"], 3),
    }
    print(f"any-module route / fast route: {ratios['module_vs_fused']:.2f}x the throughput")
    if args.json:
        print(json.dumps({"seeds": args.seeds, "rows": args.rows, "device": args.device, **ratios}))


if __name__ == "__main__":
    main()
