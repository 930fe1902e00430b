"""Training throughput: one full epoch (forward, backward, optimiser step) on census-shaped data.

199,523 rows of 7 continuous + 33 categorical columns (the real census cardinalities), two binary tasks, batch
1024, MMoE at the paper's size (8 experts x 16, towers 8) and at the budget maximum (8 x 256, towers 64), and a
2048-unit Shared-Bottom:

* ``ours``: ``hpo.training.train`` (device-resident data, fused experts, sum-of-rows first layer);
* ``tutorial``: the common implementation, a ``DataLoader`` over a one-hot ``TensorDataset`` and experts as a
  Python loop over modules, Adam;
* ``torch-rechub`` / ``deepctr-torch``: the peer libraries' MMoE on the same one-hot input, when installed
  (``make bench`` installs them with ``--no-deps``, so torch stays as it is); torch-rechub through its
  ``MTLTrainer`` (its data loader included, as its users run it), deepctr-torch through ``fit`` with its
  per-call input concatenation left out; ``-native`` (MMoE sizes): the same on their own inputs, a 4-wide
  embedding per categorical column, as their users feed census. ``*_vs_best_peer`` divides by the fastest of all;
* ``bottom2048``: Shared-Bottom with one 2048-unit bottom (the budget's widest layer) and towers of 64;
* ``seeds``: 16 seeds as one vectorised model against 16 sequential runs (paper size);
* ``contention``: ours at the paper's size as a worker runs it (its thread plan installed, re-planned before each
  run as before each trial), alone and then beside a busy loop on one core that the bench starts itself;
  ``contention_retention`` is examples/s beside the neighbour over examples/s alone (0.5 on two cores is what losing
  a whole core explains). ``contention_retention_unplanned`` is the same with every core's thread kept, as before
  thread planning;
* ``synthetic``: the MMoE paper's synthetic cell, 200 runs of its MMoE (8 x 16, towers 8) each on its own freshly
  drawn dataset (d = 100, 10,000 rows, batch 256) as one vectorised model, against lone runs (examples/s per run
  from 10 of them).

Every candidate runs once per round, interleaved, and the median of the rounds is compared, so the ratios are
measured in one run on one machine. Each candidate first runs once untimed (``median_rounds``), so the
figures are a warm worker's, as in a study of hundreds of trials. ``--json`` prints one JSON object of ratios as the last line.

    python bench/train.py [--rounds 3] [--device cpu|cuda] [--compile] [--sizes-only] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import CENSUS_ROWS, CENSUS_SPEC, census_like, median_rounds, timed
from models import LoopMMoE, PlainSharedBottom

from hpo import cores
from hpo.data import Split, TabularDataset
from hpo.data.synthetic import SyntheticConfig, make_synthetic
from hpo.models import TaskSpec, create_model
from hpo.models._native import native_build_error, native_ops
from hpo.training import TrainConfig, threads, train

# name -> (architecture, experts, units, tower units); Shared-Bottom has one bottom of ``units`` (experts unused)
SIZES: dict[str, tuple[str, int, int, int]] = {
    "paper": ("mmoe", 8, 16, 8),
    "max": ("mmoe", 8, 256, 64),
    "bottom2048": ("shared_bottom", 1, 2048, 64),
}
TASKS = (TaskSpec("income"), TaskSpec("marital"))
SYNTHETIC_RUNS = 200  # the paper's runs per model and correlation (science.md section 4)
SYNTHETIC_LONE = (
    10  # lone runs timed for the sequential reference (their mean cost per run is what is compared)
)


def census_dataset(device: torch.device) -> TabularDataset:
    feats, y = census_like(CENSUS_ROWS)
    small, ys = census_like(2048, seed=1)
    splits = {
        "train": Split(feats.cont[0], feats.cat[0], y),
        "valid": Split(small.cont[0], small.cat[0], ys),
        "test": Split(small.cont[0], small.cat[0], ys),
    }
    return TabularDataset("census-shaped", CENSUS_SPEC, TASKS, splits).to(device)


def _hyper(size: tuple[str, int, int, int]) -> dict[str, Any]:
    arch, e, h, t = size
    if arch == "shared_bottom":
        return {"bottom_units": (h,), "tower_units": (t,)}
    return {"n_experts": e, "expert_units": (h,), "tower_units": (t,)}


COMPILE = False  # --compile: every ``ours`` candidate trains with ``training.compile`` (torch.compile)


def ours(
    ds: TabularDataset,
    size: tuple[str, int, int, int],
    device: torch.device,
    seeds: int = 1,
    batch: int = 1024,
) -> None:
    model = create_model(
        size[0], ds.spec, ds.tasks, replicas=seeds, seeds=list(range(seeds)), device=device, **_hyper(size)
    )
    cfg = TrainConfig(lr=1e-3, batch_size=batch, epochs=1, patience=None, device=str(device), compile=COMPILE)
    train(model, ds, cfg, evaluate_splits=("valid",))
    if device.type == "cuda":
        torch.cuda.synchronize()


def synthetic_data(runs: int, device: torch.device) -> TabularDataset:
    """The paper's synthetic cell (d = 100, 10,000 training rows, p = 0.5): one freshly drawn dataset per run."""
    return TabularDataset.stack(
        [
            make_synthetic(SyntheticConfig(p=0.5, n_train=10_000, n_valid=2000, n_test=2000, seed=s))
            for s in range(runs)
        ]
    ).to(device)


def tutorial(
    onehot: torch.Tensor, y: torch.Tensor, size: tuple[str, int, int, int], device: torch.device
) -> None:
    arch, e, h, t = size
    d = onehot.shape[1]
    model = (PlainSharedBottom(d, h, t) if arch == "shared_bottom" else LoopMMoE(d, e, h, t)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(onehot, y), batch_size=1024, shuffle=True
    )
    loss_fn = nn.BCEWithLogitsLoss()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def rechub_runner(
    onehot: torch.Tensor, y: torch.Tensor, size: tuple[str, int, int, int], device: torch.device
) -> Any:
    """torch-rechub 0.9.0's MMOE (or SharedBottom) trained by its MTLTrainer for one epoch on the one-hot input."""
    try:
        from torch_rechub.basic.features import DenseFeature
        from torch_rechub.models.multi_task import MMOE, SharedBottom
        from torch_rechub.trainers import MTLTrainer
        from torch_rechub.utils.data import DataGenerator
    except ImportError:
        return None
    arch, e, h, t = size
    d = onehot.shape[1]
    x = {"x": onehot.numpy()}
    features = [DenseFeature("x", embed_dim=d)]

    def run() -> None:
        tasks = ["classification", "classification"]
        towers = [{"dims": [t]}, {"dims": [t]}]
        model = (
            SharedBottom(features, tasks, {"dims": [h]}, towers)
            if arch == "shared_bottom"
            else MMOE(features, tasks, e, {"dims": [h]}, towers)
        )
        gen = DataGenerator(x, y.numpy())
        train_dl, _, _ = gen.generate_dataloader(
            x_val=x, y_val=y.numpy()[:2], x_test=None, y_test=None, batch_size=1024
        )
        trainer = MTLTrainer(
            model,
            ["classification", "classification"],
            optimizer_params={"lr": 1e-3},
            n_epoch=1,
            earlystop_patience=10,
            device=str(device),
            model_path="/tmp",
        )
        trainer.train_one_epoch(train_dl)

    return run


def deepctr_runner(
    onehot: torch.Tensor, y: torch.Tensor, size: tuple[str, int, int, int], device: torch.device
) -> Any:
    """deepctr-torch 0.3.0's MMOE (linear+softmax gates) or SharedBottom, ``fit`` for one epoch on the one-hot
    input."""
    try:
        from deepctr_torch.inputs import DenseFeat
        from deepctr_torch.models import MMOE, SharedBottom
    except ImportError:
        return None
    arch, e, h, t = size
    cols = [DenseFeat(f"c{i}", 1) for i in range(onehot.shape[1])]
    x = {f"c{i}": onehot[:, i].numpy() for i in range(onehot.shape[1])}

    def run() -> float:
        model = (
            SharedBottom(
                cols,
                bottom_dnn_hidden_units=(h,),
                tower_dnn_hidden_units=(t,),
                task_types=("binary", "binary"),
                device=str(device),
            )
            if arch == "shared_bottom"
            else MMOE(
                cols,
                num_experts=e,
                expert_dnn_hidden_units=(h,),
                gate_dnn_hidden_units=(),
                tower_dnn_hidden_units=(t,),
                task_types=("binary", "binary"),
                device=str(device),
            )
        )
        model.compile("adam", ["binary_crossentropy", "binary_crossentropy"])
        # fit() concatenates its inputs on every call; time that alone (epochs=0) and leave it out
        prep = timed(lambda: model.fit(x, y.numpy(), batch_size=1024, epochs=0, verbose=0))
        return timed(lambda: model.fit(x, y.numpy(), batch_size=1024, epochs=1, verbose=0)) - prep

    return run


NATIVE_DIM = (
    4  # the peers' usual embedding width per categorical column (performance notes: "4-dim embeddings")
)


def _native_columns(feats: Any) -> tuple[dict[str, np.ndarray], list[int]]:
    """Census-shaped rows as the peers feed them natively: one code column per categorical field (local codes,
    0 .. cardinality - 1) and one column per continuous value."""
    x = {f"d{j}": feats.cont[0, :, j].numpy() for j in range(CENSUS_SPEC.n_continuous)}
    for j, off in enumerate(CENSUS_SPEC.offsets):
        x[f"s{j}"] = (feats.cat[0, :, j] - off).numpy()
    return x, list(CENSUS_SPEC.cardinalities)


def rechub_native_runner(
    feats: Any, y: torch.Tensor, size: tuple[str, int, int, int], device: torch.device
) -> Any:
    """torch-rechub's MMOE on its own inputs: a 4-wide ``SparseFeature`` per categorical column, a
    ``DenseFeature`` per continuous one (MTLTrainer, its data loader included)."""
    try:
        from torch_rechub.basic.features import DenseFeature, SparseFeature
        from torch_rechub.models.multi_task import MMOE
        from torch_rechub.trainers import MTLTrainer
        from torch_rechub.utils.data import DataGenerator
    except ImportError:
        return None
    arch, e, h, t = size
    if arch != "mmoe":
        return None
    x, cards = _native_columns(feats)
    features = [DenseFeature(f"d{j}") for j in range(CENSUS_SPEC.n_continuous)]
    features += [SparseFeature(f"s{j}", c, NATIVE_DIM) for j, c in enumerate(cards)]

    def run() -> None:
        tasks = ["classification", "classification"]
        model = MMOE(features, tasks, e, {"dims": [h]}, [{"dims": [t]}, {"dims": [t]}])
        loader, _, _ = DataGenerator(x, y.numpy()).generate_dataloader(
            x_val=x, y_val=y.numpy()[:2], x_test=None, y_test=None, batch_size=1024
        )
        trainer = MTLTrainer(
            model, tasks, optimizer_params={"lr": 1e-3}, n_epoch=1, device=str(device), model_path="/tmp"
        )
        trainer.train_one_epoch(loader)

    return run


def deepctr_native_runner(
    feats: Any, y: torch.Tensor, size: tuple[str, int, int, int], device: torch.device
) -> Any:
    """deepctr-torch's MMOE on its own inputs: a 4-wide ``SparseFeat`` per categorical column, a ``DenseFeat`` per
    continuous one (``fit``, its per-call input concatenation left out)."""
    try:
        from deepctr_torch.inputs import DenseFeat, SparseFeat
        from deepctr_torch.models import MMOE
    except ImportError:
        return None
    arch, e, h, t = size
    if arch != "mmoe":
        return None
    x, cards = _native_columns(feats)
    cols = [DenseFeat(f"d{j}", 1) for j in range(CENSUS_SPEC.n_continuous)]
    cols += [SparseFeat(f"s{j}", c, NATIVE_DIM) for j, c in enumerate(cards)]

    def run() -> float:
        model = MMOE(cols, num_experts=e, expert_dnn_hidden_units=(h,), gate_dnn_hidden_units=(),
                     tower_dnn_hidden_units=(t,), task_types=("binary", "binary"), device=str(device))  # fmt: skip
        model.compile("adam", ["binary_crossentropy", "binary_crossentropy"])
        prep = timed(lambda: model.fit(x, y.numpy(), batch_size=1024, epochs=0, verbose=0))
        return timed(lambda: model.fit(x, y.numpy(), batch_size=1024, epochs=1, verbose=0)) - prep

    return run


PEERS = ("torch-rechub", "deepctr-torch", "torch-rechub-native", "deepctr-torch-native")


def _busy() -> None:
    while True:
        pass


def contention(ds: TabularDataset, device: torch.device, rounds: int) -> dict[str, float]:
    """Examples/s of ours at the paper's size alone and beside a one-core busy loop, with the worker's thread plan
    (re-planned before each epoch, as before each trial) and without it (every core's thread kept).

    Each round measures all four, the neighbour started and stopped within the round, so that drift of a shared
    machine hits alone and busy alike; medians over the rounds (one untimed warm-up of each first). After each
    change of load the bench waits out ``threads.REPLAN_SECONDS``, the longest a worker keeps a count before it
    looks at the load again: the figures are the steady state a long study sees."""
    import multiprocessing

    plan = threads.current_plan()
    assert plan is not None

    def planned() -> float:
        threads.for_trial()
        return timed(lambda: ours(ds, SIZES["paper"], device))

    def unplanned() -> float:
        torch.set_num_threads(plan.threads)
        return timed(lambda: ours(ds, SIZES["paper"], device))

    fns = {"planned": planned, "unplanned": unplanned}
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {}
    settle = threads.REPLAN_SECONDS + 0.5
    for _ in range(rounds):
        time.sleep(settle)
        for k, fn in fns.items():
            times.setdefault(f"contention/{k}/alone", []).append(fn())
        hog = multiprocessing.get_context("spawn").Process(target=_busy, daemon=True)
        hog.start()
        try:
            time.sleep(settle)
            for k, fn in fns.items():
                times.setdefault(f"contention/{k}/busy", []).append(fn())
        finally:
            hog.terminate()
            hog.join()
    threads.for_trial()
    return {k: CENSUS_ROWS / float(np.median(v)) for k, v in times.items()}


def ratios_of(eps: dict[str, float], *, sizes_only: bool = False) -> dict[str, float]:
    """Every ratio the bench reports, from the candidates' examples/s (the sizes' alone with ``sizes_only``)."""
    ratios: dict[str, float] = {}
    for size_name in SIZES:
        ratios[f"{size_name}_vs_tutorial"] = eps[f"{size_name}/ours"] / eps[f"{size_name}/tutorial"]
        peers = [eps[k] for k in eps if k.startswith(f"{size_name}/") and k.split("/")[1] in PEERS]
        if peers:
            ratios[f"{size_name}_vs_best_peer"] = eps[f"{size_name}/ours"] / max(peers)
    if sizes_only:
        return ratios
    ratios["seeds_vs_sequential"] = eps["seeds/vectorised"] / eps["seeds/sequential"]
    ratios["synthetic_vs_sequential"] = eps["synthetic/vectorised"] / eps["synthetic/sequential"]
    if "contention/planned/busy" in eps:
        for k in ("planned", "unplanned"):
            name = "contention_retention" + ("" if k == "planned" else "_unplanned")
            ratios[name] = eps[f"contention/{k}/busy"] / eps[f"contention/{k}/alone"]
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--compile", action="store_true", help="train ours with torch.compile (training.compile)")
    ap.add_argument(
        "--sizes-only", action="store_true", help="only the sizes against the tutorial and the peers"
    )
    args = ap.parse_args()
    global COMPILE
    COMPILE = args.compile
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    threads.install(cores.plan_threads(device=device))  # as a worker alone on this machine plans its threads
    ds = census_dataset(device)
    feats, y = census_like(CENSUS_ROWS)
    onehot = feats.one_hot(CENSUS_SPEC)[0]
    eps: dict[str, float] = {}
    for size_name, size in SIZES.items():
        fns = {
            f"{size_name}/ours": lambda s=size: timed(lambda: ours(ds, s, device)),
            f"{size_name}/tutorial": lambda s=size: timed(lambda: tutorial(onehot, y, s, device)),
        }
        if not args.no_peers:
            rechub = rechub_runner(onehot, y, size, device)
            if rechub is not None:
                fns[f"{size_name}/torch-rechub"] = lambda run=rechub: timed(run)
            deepctr = deepctr_runner(onehot, y, size, device)
            if deepctr is not None:
                fns[f"{size_name}/deepctr-torch"] = deepctr
            rechub_native = rechub_native_runner(feats, y, size, device)
            if rechub_native is not None:
                fns[f"{size_name}/torch-rechub-native"] = lambda run=rechub_native: timed(run)
            deepctr_native = deepctr_native_runner(feats, y, size, device)
            if deepctr_native is not None:
                fns[f"{size_name}/deepctr-torch-native"] = deepctr_native
        med = median_rounds(fns, args.rounds)
        eps.update({k: CENSUS_ROWS / v for k, v in med.items()})
    if args.sizes_only:
        _print(eps, ratios_of(eps, sizes_only=True), args, device, torch.get_num_threads())
        return
    s = args.seeds
    med = median_rounds(
        {
            "seeds/vectorised": lambda: timed(lambda: ours(ds, SIZES["paper"], device, seeds=s)),
            "seeds/sequential": lambda: timed(lambda: [ours(ds, SIZES["paper"], device) for _ in range(s)]),
        },
        args.rounds,
    )
    eps.update({k: s * CENSUS_ROWS / v for k, v in med.items()})
    # the synthetic cell: 200 runs of the paper's MMoE, each on its own dataset, as one vectorised model, against
    # lone runs of the same model on the first datasets (batch 256, as the synthetic studies train)
    syn = synthetic_data(SYNTHETIC_RUNS, device)
    lone = [syn.select_replicas([i]) for i in range(SYNTHETIC_LONE)]
    rows = len(syn.splits["train"].y[0])
    med = median_rounds(
        {
            "synthetic/vectorised": lambda: timed(
                lambda: ours(syn, SIZES["paper"], device, seeds=SYNTHETIC_RUNS, batch=256)
            ),
            "synthetic/sequential": lambda: timed(
                lambda: [ours(d, SIZES["paper"], device, batch=256) for d in lone]
            ),
        },
        args.rounds,
    )
    eps["synthetic/vectorised"] = SYNTHETIC_RUNS * rows / med["synthetic/vectorised"]
    eps["synthetic/sequential"] = SYNTHETIC_LONE * rows / med["synthetic/sequential"]
    threads_used = torch.get_num_threads()
    if device.type == "cpu":  # last: it leaves the count a busy neighbour planned until the next re-plan
        eps.update(contention(ds, device, max(5, args.rounds)))
    _print(eps, ratios_of(eps), args, device, threads_used)


def _print(
    eps: dict[str, float], ratios: dict[str, float], args: Any, device: torch.device, threads_used: int
) -> None:
    kernel = "compiled" if native_ops() is not None else f"unavailable ({native_build_error()})"
    print(
        f"one training epoch, {CENSUS_ROWS:,} census-shaped rows, batch 1024, device {device}, "
        f"{threads_used} threads, median of {args.rounds} interleaved rounds, "
        f"first-layer kernel {kernel}, ours {'compiled' if COMPILE else 'eager'}; peers on the one-hot input and "
        f"(-native) on their own {NATIVE_DIM}-wide embeddings per categorical column"
    )
    print(f"{'candidate':<26} {'examples/s':>12}")
    for k, v in eps.items():
        print(f"{k:<26} {v:>12,.0f}")
    for k, v in ratios.items():
        print(f"{k:<26} {v:>11.2f}x")
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))


if __name__ == "__main__":
    main()
