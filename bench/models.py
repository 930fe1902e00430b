"""Forward+backward throughput of the fused MMoE against a plain per-expert-loop reference.

Census-shaped input (7 continuous + 33 categorical columns, ~510 one-hot columns), batch 1024, at the MMoE paper's
size (8 experts x 16 units, towers 8) and at the budget maximum (8 x 256, towers 64). The reference is the common
implementation: ``nn.Linear`` experts in a ``ModuleList`` looped in Python over the explicit one-hot input. Both
are timed in the same run, interleaved, and the ratio is printed; with ``--json`` the last line is
``{"paper": ratio, "max": ratio}``.

    python bench/models.py [--batches 40] [--rounds 5] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import CENSUS_SPEC, census_like, median_rounds, timed

from hpo.models import TaskSpec, create_model

SIZES = {"paper": (8, 16, 8), "max": (8, 256, 64)}


class LoopMMoE(nn.Module):
    """The tutorial MMoE: a Python loop over expert modules on the one-hot input."""

    def __init__(self, d: int, n_experts: int, units: int, tower: int, n_tasks: int = 2) -> None:
        super().__init__()
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(d, units), nn.ReLU()) for _ in range(n_experts))
        self.gates = nn.ModuleList(nn.Linear(d, n_experts) for _ in range(n_tasks))
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(units, tower), nn.ReLU(), nn.Linear(tower, 1)) for _ in range(n_tasks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.stack([f(x) for f in self.experts], dim=1)  # (B, E, h)
        outs = []
        for gate, tower in zip(self.gates, self.towers):
            g = torch.softmax(gate(x), dim=-1).unsqueeze(-1)
            outs.append(tower((g * e).sum(dim=1)))
        return torch.cat(outs, dim=-1)


class PlainSharedBottom(nn.Module):
    """The tutorial Shared-Bottom: one dense bottom on the one-hot input, then a small tower per task."""

    def __init__(self, d: int, units: int, tower: int, n_tasks: int = 2) -> None:
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(d, units), nn.ReLU())
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(units, tower), nn.ReLU(), nn.Linear(tower, 1)) for _ in range(n_tasks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bottom(x)
        return torch.cat([tower(h) for tower in self.towers], dim=-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.batches * args.batch_size
    feats, y = census_like(n)
    onehot = feats.one_hot(CENSUS_SPEC)[0]
    tasks = [TaskSpec("income"), TaskSpec("marital")]
    loss_fn = nn.BCEWithLogitsLoss()
    ratios: dict[str, float] = {}
    rows = []
    for size, (e, h, t) in SIZES.items():
        fused = create_model("mmoe", CENSUS_SPEC, tasks, n_experts=e, expert_units=(h,), tower_units=(t,))
        loop = LoopMMoE(CENSUS_SPEC.one_hot_width, e, h, t)
        bs = args.batch_size
        batches = [
            (feats.cont[:, i : i + bs], feats.cat[:, i : i + bs], onehot[i : i + bs], y[i : i + bs])
            for i in range(0, n, bs)
        ]

        def run_fused() -> None:
            for cont, cat, _, yb in batches:
                fused.zero_grad(set_to_none=True)
                loss_fn(fused(type(feats)(cont, cat))[0], yb).backward()

        def run_loop() -> None:
            for _, _, oh, yb in batches:
                loop.zero_grad(set_to_none=True)
                loss_fn(loop(oh), yb).backward()

        run_fused(), run_loop()  # warm-up
        med = median_rounds({"fused": lambda: timed(run_fused), "loop": lambda: timed(run_loop)}, args.rounds)
        eps = {k: n / v for k, v in med.items()}
        ratios[size] = eps["fused"] / eps["loop"]
        rows.append((size, f"{e}x{h}, towers {t}", eps["loop"], eps["fused"], ratios[size]))
    print(
        f"MMoE forward+backward, batch {args.batch_size}, {torch.get_num_threads()} threads, census-shaped input"
    )
    print(f"{'size':<6} {'model':<20} {'loop ex/s':>12} {'fused ex/s':>12} {'ratio':>7}")
    for size, desc, a, b, r in rows:
        print(f"{size:<6} {desc:<20} {a:>12,.0f} {b:>12,.0f} {r:>6.2f}x")
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))


if __name__ == "__main__":
    main()
