"""Training throughput on recommendation logs: sparse ID fields through embedding tables, against the peers'
own sparse-feature embeddings.

The data is the recsys generator's (``hpo.data.recsys``) with every ID field sparse: user and item (vocabularies
``--users`` and ``--items``), item category, context, user segment and ``--extra`` attribute fields of 1000
values (21 sparse fields by default), plus the two continuous columns; tasks click and purchase (entire space).
Every candidate trains one epoch over the same rows, batch 1024, Adam at lr 1e-3, every field embedded ``--dim``
wide:

* ``ours``: ``hpo.training.train`` on the fused model (``field_dim`` = dim), Adam over every parameter as the peers
  run it (the goal ratios are this one's);
* ``ours-rows``: the same with ``embedding_updates: rows`` (sparse table gradients and lazy Adam for the tables:
  another optimiser for the tables, so printed beside the goal ratios, not in them: ``recsys_*_rows_vs_dense``);
* ``torch-rechub``: its MMOE (or ESMM) on ``SparseFeature`` embeddings of the same fields and ``DenseFeature`` s
  for the continuous columns, trained by its ``MTLTrainer`` with its data loader (as its users run it);
* ``deepctr-torch``: its MMOE on ``SparseFeat``/``DenseFeat`` (linear+softmax gates), ``fit`` for one epoch with
  its per-call input concatenation left out.

Sizes: MMoE at the paper's size (8 experts x 16, towers 8) and at the budget's widest (8 x 256, towers 64); ESMM
with towers of 64 on each task (ours on a 64-wide shared embedding of the fields; torch-rechub's towers read the
concatenated field embeddings directly, its own design). Every candidate runs once untimed and then once per round,
interleaved; medians are compared. ``--json`` prints the ratios as the last line (``recsys_paper_vs_best_peer``,
``recsys_max_vs_best_peer``, ``esmm_vs_rechub``), with each candidate's parameter count beside.

    python bench/recsys.py [--rounds 3] [--rows 200000] [--device cpu|cuda] [--json]
    python bench/recsys.py --memory [--rows 200000]     # peak memory per candidate, each in its own process
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import median_rounds, timed

from hpo import cores
from hpo.data import TabularDataset
from hpo.data.recsys import RecsysConfig, make_recsys
from hpo.models import create_model
from hpo.training import TrainConfig, threads, train

SIZES: dict[str, dict[str, Any]] = {
    "paper": {"arch": "mmoe", "experts": 8, "units": 16, "tower": 8},
    "max": {"arch": "mmoe", "experts": 8, "units": 256, "tower": 64},
    "esmm": {"arch": "esmm", "tower": 64},
}
BATCH = 1024


def dataset(rows: int, users: int, items: int, extra: int, device: torch.device) -> TabularDataset:
    cfg = RecsysConfig(
        n_users=users,
        n_items=items,
        sparse="all",
        extra_fields=extra,
        n_train=rows,
        n_valid=2048,
        n_test=2048,
    )
    return make_recsys(cfg).to(device)


def ours(
    ds: TabularDataset, size: dict[str, Any], dim: int, device: torch.device, updates: str = "dense"
) -> torch.nn.Module:
    if size["arch"] == "esmm":
        hyper: dict[str, Any] = {"embed_dim": 64, "tower_units": (size["tower"],)}
    else:
        hyper = {
            "n_experts": size["experts"],
            "expert_units": (size["units"],),
            "tower_units": (size["tower"],),
        }
    model = create_model(size["arch"], ds.spec, ds.tasks, device=device, field_dim=dim, **hyper)
    cfg = TrainConfig(
        lr=1e-3, batch_size=BATCH, epochs=1, patience=None, device=str(device), embedding_updates=updates
    )  # type: ignore[arg-type]
    train(model, ds, cfg, evaluate_splits=("valid",))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model


def _columns(ds: TabularDataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The training rows as named numpy columns (the peers' input form) and the labels."""
    train_split = ds.splits["train"]
    x = {f"cont{j}": train_split.cont[:, j].cpu().numpy() for j in range(ds.spec.n_continuous)}
    for j, f in enumerate(ds.spec.sparse):
        x[f.name] = train_split.cat[:, j].cpu().numpy()
    return x, train_split.y.cpu().numpy()


def rechub_runner(ds: TabularDataset, size: dict[str, Any], dim: int, device: torch.device) -> Any:
    try:
        from torch_rechub.basic.features import DenseFeature, SparseFeature
        from torch_rechub.models.multi_task import ESMM, MMOE
        from torch_rechub.trainers import MTLTrainer
        from torch_rechub.utils.data import DataGenerator
    except ImportError:
        return None
    x, y = _columns(ds)
    sparse = [SparseFeature(f.name, f.vocab, dim) for f in ds.spec.sparse]
    dense = [DenseFeature(f"cont{j}") for j in range(ds.spec.n_continuous)]
    if size["arch"] == "esmm":  # its ESMM takes sparse features only, and scores cvr, ctr and ctcvr
        y = np.stack([y[:, 1], y[:, 0], y[:, 1]], axis=1)
        x = {f.name: x[f.name] for f in ds.spec.sparse}
    tasks = ["classification"] * y.shape[1]

    def run() -> None:
        if size["arch"] == "esmm":
            half = len(sparse) // 2
            tower = {"dims": [size["tower"]]}
            model: Any = ESMM(sparse[:half], sparse[half:], tower, tower)
        else:
            towers = [{"dims": [size["tower"]]}] * 2
            model = MMOE(dense + sparse, tasks, size["experts"], {"dims": [size["units"]]}, towers)
        loader, _, _ = DataGenerator(x, y).generate_dataloader(
            x_val=x, y_val=y[:2], x_test=None, y_test=None, batch_size=BATCH
        )
        trainer = MTLTrainer(
            model, tasks, optimizer_params={"lr": 1e-3}, n_epoch=1, device=str(device), model_path="/tmp"
        )
        trainer.train_one_epoch(loader)
        run.params = sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]

    return run


def deepctr_runner(ds: TabularDataset, size: dict[str, Any], dim: int, device: torch.device) -> Any:
    if size["arch"] != "mmoe":
        return None
    try:
        from deepctr_torch.inputs import DenseFeat, SparseFeat
        from deepctr_torch.models import MMOE
    except ImportError:
        return None
    x, y = _columns(ds)
    cols = [DenseFeat(f"cont{j}", 1) for j in range(ds.spec.n_continuous)]
    cols += [SparseFeat(f.name, f.vocab, dim) for f in ds.spec.sparse]

    def run() -> float:
        model = MMOE(
            cols,
            num_experts=size["experts"],
            expert_dnn_hidden_units=(size["units"],),
            gate_dnn_hidden_units=(),
            tower_dnn_hidden_units=(size["tower"],),
            task_types=("binary", "binary"),
            device=str(device),
        )
        model.compile("adam", ["binary_crossentropy", "binary_crossentropy"])
        prep = timed(lambda: model.fit(x, y, batch_size=BATCH, epochs=0, verbose=0))
        spent = timed(lambda: model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)) - prep
        run.params = sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
        return spent

    return run


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def one_candidate(args: argparse.Namespace) -> None:
    """``--one SIZE/CANDIDATE``: build the data, train that one candidate once, and print the process's resident
    memory before training and at its peak (what training the candidate added), as one JSON line."""
    name, who = args.one.split("/")
    device = torch.device(args.device)
    ds = dataset(args.rows, args.users, args.items, args.extra, device)
    size = SIZES[name]
    run = {
        "ours": lambda: ours(ds, size, args.dim, device),
        "torch-rechub": rechub_runner(ds, size, args.dim, device),
        "deepctr-torch": deepctr_runner(ds, size, args.dim, device),
    }[who]
    before = _peak_rss_mb()
    if run is not None:
        run()
    print(json.dumps({"candidate": args.one, "before_mb": round(before), "peak_mb": round(_peak_rss_mb())}))


def memory(args: argparse.Namespace) -> dict[str, float]:
    """Each candidate in its own process (``--one``): the peak resident memory training added, in MB."""
    import subprocess

    out = {}
    for name in SIZES:
        for who in ("ours", "torch-rechub", "deepctr-torch"):
            cmd = [sys.executable, __file__, "--one", f"{name}/{who}", "--rows", str(args.rows)]
            cmd += ["--users", str(args.users), "--items", str(args.items), "--extra", str(args.extra)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            line = json.loads(done.stdout.strip().splitlines()[-1])
            if line["peak_mb"] > line["before_mb"] or who == "ours":
                out[f"{name}/{who}"] = line["peak_mb"] - line["before_mb"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument(
        "--memory", action="store_true", help="peak memory per candidate, each in its own process"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--extra", type=int, default=16)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.one:
        one_candidate(args)
        return
    if args.memory:
        mb = memory(args)
        print(
            f"peak resident memory training added, MB ({args.rows:,} rows; each candidate in its own process)"
        )
        for k, v in mb.items():
            print(f"{k:<24} {v:>8,.0f}")
        return
    device = torch.device(args.device)
    threads.install(cores.plan_threads(device=device))
    ds = dataset(args.rows, args.users, args.items, args.extra, device)
    eps: dict[str, float] = {}
    params: dict[str, int] = {}
    for name, size in SIZES.items():
        holder: dict[str, torch.nn.Module] = {}
        fns = {
            f"{name}/ours": lambda s=size: timed(lambda: holder.update(m=ours(ds, s, args.dim, device))),
            f"{name}/ours-rows": lambda s=size: timed(lambda: ours(ds, s, args.dim, device, "rows")),
        }
        peers = {
            "torch-rechub": rechub_runner(ds, size, args.dim, device),
            "deepctr-torch": deepctr_runner(ds, size, args.dim, device),
        }
        for peer, run in peers.items():
            if run is not None:
                fns[f"{name}/{peer}"] = (lambda r=run: timed(r)) if peer == "torch-rechub" else run
        med = median_rounds(fns, args.rounds)
        eps.update({k: args.rows / v for k, v in med.items()})
        params[f"{name}/ours"] = int(holder["m"].parameter_count())  # type: ignore[operator]
        params.update({f"{name}/{p}": int(r.params) for p, r in peers.items() if r is not None})
    ratios = ratios_of(eps)
    print(
        f"one training epoch, {args.rows:,} generated log rows, {len(ds.spec.sparse)} sparse fields "
        f"(users {args.users:,}, items {args.items:,}), embedding width {args.dim}, batch {BATCH}, device {device}, "
        f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds"
    )
    print(f"{'candidate':<24} {'examples/s':>12} {'parameters':>12}")
    for k, v in eps.items():
        print(f"{k:<24} {v:>12,.0f} {params.get(k, 0):>12,}")
    for k, v in ratios.items():
        print(f"{k:<24} {v:>11.2f}x")
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))


def ratios_of(eps: dict[str, float]) -> dict[str, float]:
    out = {}
    for name in ("paper", "max"):
        peers = [v for k, v in eps.items() if k.startswith(f"{name}/") and "/ours" not in k]
        if peers:
            out[f"recsys_{name}_vs_best_peer"] = eps[f"{name}/ours"] / max(peers)
        if f"{name}/ours-rows" in eps:
            out[f"recsys_{name}_rows_vs_dense"] = eps[f"{name}/ours-rows"] / eps[f"{name}/ours"]
    if "esmm/torch-rechub" in eps:
        out["esmm_vs_rechub"] = eps["esmm/ours"] / eps["esmm/torch-rechub"]
    if "esmm/ours-rows" in eps:
        out["recsys_esmm_rows_vs_dense"] = eps["esmm/ours-rows"] / eps["esmm/ours"]
    return out


if __name__ == "__main__":
    main()
