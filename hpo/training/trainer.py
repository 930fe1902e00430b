"""The training engine. It knows nothing of Optuna: model + dataset + config in, per-replica results out.

* Data lives on the device; a batch is an index slice of a per-epoch permutation drawn from the replica's own
  data-order seed (no DataLoader, no per-batch host-device copies).
* ``R`` replicas of one configuration train as one vectorised model (weights stacked on a leading axis). Each
  replica has its own initialisation seed, data order, early stopping, and gradient clipping; the loss is the sum
  of the replicas' losses, so each replica's gradient is exactly that of a lone run. Finished replicas are cut
  out of the model and the optimiser, so they stop costing work.
* A replica whose loss turns NaN or infinite stops at once with status ``diverged``; the others go on.
* A per-epoch callback receives an :class:`EpochReport`; it may raise to stop training (the search layer prunes
  that way).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from hpo.config.training import TrainConfig
from hpo.data._tabular import SPLITS, Split, TabularDataset
from hpo.errors import ConfigError
from hpo.models import MTLModel
from hpo.models._base import select_replicas
from hpo.models._embeddings import FieldEmbeddings
from hpo.models._native import native_ops
from hpo.schema import CURVE_SPLITS, METRICS_BY_KIND, Features, default_metric
from hpo.training.checkpoint import Checkpoint
from hpo.training.metrics import HIGHER_IS_BETTER, task_metric, task_metrics
from hpo.weighting import LossWeighting, create_weighting

__all__ = ["EpochReport", "TrainResult", "resolve_device", "train"]

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU; anything else is taken as named."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device {device!r} is not a device name (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here")
    if dev.type == "cuda" and dev.index is None:  # tensors report cuda:N; compare like with like
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def bf16_autocast_ok(device: torch.device) -> bool:
    """Whether ``amp`` (bf16 autocast of the training steps) applies on ``device``: on CUDA, and on the CPU.

    On a CPU with AVX512-BF16 or AMX, PyTorch's oneDNN matrix products run bf16 natively: a census-shaped
    Shared-Bottom of three 2048-unit layers steps 2.85 times as fast as in float32 on one thread, one-layer models
    (whose first layer stays float32) 0.9-1.1 times (bench/amp.py measures it per size, with the test AUC beside
    it: within a tenth of the seed spread). Without them bf16 is emulated and slower than float32, so
    the request is kept (results must not depend on which machine a worker drew) but logged once as a warning.
    Other device types have no bf16 autocast here and train in float32.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    if not cpu_has_native_bf16():
        _warn_once(
            "amp: this CPU has neither AVX512-BF16 nor AMX, so bf16 autocast is emulated and slower than float32;"
            " set training.amp: false for speed here (results differ from float32 either way)"
        )
    return True


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX), as PyTorch's build detects it."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning logged once per process (a study trains thousands of models with the same setting)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


@dataclass
class EpochReport:
    """What a callback sees after each epoch: one entry per replica still training (``replicas`` says which)."""

    epoch: int
    step: int
    replicas: list[int]
    train_loss: list[float]
    valid_metric: list[float]
    metric_name: str
    elapsed: float


@dataclass
class TrainResult:
    """One replica's outcome: metrics of its best epoch on every split, the curve, seeds and costs."""

    metrics: dict[str, dict[str, dict[str, float]]]
    curve: list[dict[str, float]]
    best_epoch: int
    best_value: float
    metric_name: str
    epochs_run: int
    steps: int
    wall_time: float
    device: str
    parameter_count: int
    init_seed: int
    data_seed: int
    status: str = "ok"
    reason: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def metric(self, split: str, task: str, name: str) -> float:
        return self.metrics[split][task][name]


def _task_losses(out: Tensor, y: Tensor, kinds: Sequence[str]) -> Tensor:
    """``(R, B, K)`` outputs and ``(R, B, K)`` labels -> ``(R, K)`` mean losses (BCE on logits, or MSE).

    A NaN label marks a row where the task is undefined (a conversion where there was no click): the row adds
    nothing to that task's loss, nor to its gradient, and the mean is over the rows where it is defined (0 for a
    batch with none)."""
    cols = []
    for k, kind in enumerate(kinds):
        o = out[..., k]
        if o.dtype in (torch.float16, torch.bfloat16):
            o = o.float()
        t = y[..., k].to(o.dtype)
        defined = ~torch.isnan(t)
        if bool(defined.all()):
            per_row = (
                F.binary_cross_entropy_with_logits(o, t, reduction="none")
                if kind == "binary"
                else (o - t).pow(2)
            )
            cols.append(per_row.mean(dim=1))
            continue
        t = torch.where(defined, t, torch.zeros_like(t))
        per_row = (
            F.binary_cross_entropy_with_logits(o, t, reduction="none") if kind == "binary" else (o - t).pow(2)
        )
        per_row = torch.where(defined, per_row, torch.zeros_like(per_row))
        cols.append(per_row.sum(dim=1) / defined.sum(dim=1).clamp(min=1).to(per_row.dtype))
    return torch.stack(cols, dim=1)


def _clip_per_replica(params: Sequence[Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` applied to each replica separately (the norm of a lone run's gradient). A sparse
    gradient (an embedding table's rows, ``embedding_updates: rows``) counts its rows' entries, summed per row first,
    as the dense gradient would hold them."""
    with_grads = [p for p in params if p.grad is not None]
    if not with_grads:
        return
    for p in with_grads:
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    sq = torch.stack([_replica_sq(p.grad) for p in with_grads if p.grad is not None]).sum(0)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for p in with_grads:
        g = p.grad
        assert g is not None
        if g.is_sparse:
            scale = coef[g.indices()[0]].to(g.dtype).unsqueeze(-1)
            p.grad = torch.sparse_coo_tensor(
                g.indices(), g.values() * scale, g.shape, is_coalesced=True, check_invariants=False
            )
        else:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))


def _replica_sq(g: Tensor) -> Tensor:
    """The squared norm of each replica's part of ``g`` (its first axis), dense or sparse (coalesced)."""
    if not g.is_sparse:
        return g.pow(2).flatten(1).sum(1)
    out = torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)
    return out.index_add_(0, g.indices()[0], g.values().pow(2).flatten(1).sum(1))


class _Monitor:
    """Which validation number decides early stopping and model selection, and in which direction."""

    def __init__(self, spec: str, dataset: TabularDataset) -> None:
        names = [t.name for t in dataset.tasks]
        if not spec:
            first = dataset.tasks[0]
            spec = f"{first.name}.{default_metric(first.kind)}"
        self.name = spec
        if spec == "loss":
            self.task, self.metric = None, "loss"
        else:
            task, _, metric = spec.partition(".")
            if task not in names:
                raise ConfigError(f"early_stopping_metric {spec!r}: unknown task {task!r}; tasks: {names}")
            kind = dataset.tasks[names.index(task)].kind
            allowed = METRICS_BY_KIND[kind]
            if metric not in allowed:
                raise ConfigError(
                    f"early_stopping_metric {spec!r}: metric must be one of {allowed} for {kind} task"
                )
            self.task, self.metric = names.index(task), metric
        self.higher = HIGHER_IS_BETTER[self.metric]

    def better(self, new: float, best: float) -> bool:
        if math.isnan(new):
            return False
        if math.isnan(best):
            return True
        return new > best if self.higher else new < best


# On the CPU an evaluation chunk holds at most this many (replica, row) pairs: the activations of 200 replicas x
# 2,000 rows of a paper-size MMoE are 230 MB, far past the caches, and evaluating them in one chunk took a large share
# of a synthetic retrain's time (bench/PROFILE.md); chunks of this size stay in cache. A lone replica's chunks are
# unchanged (``eval_batch_size`` rows), so its results are too.
CPU_EVAL_PAIRS = 16384


def _eval_chunk(batch: int, replicas: int, device: torch.device) -> int:
    """Rows per evaluation chunk: ``eval_batch_size``, capped on the CPU so the chunk's activations stay in cache."""
    if device.type != "cpu" or replicas <= 1:
        return batch
    return max(1, min(batch, CPU_EVAL_PAIRS // replicas))


@torch.no_grad()
def _outputs(model: MTLModel, split: Split, batch: int) -> Tensor:
    """Raw outputs ``(R, N, K)`` of every replica on a whole split, in chunks, in float32 even where training steps
    run under bf16 autocast (``amp``): a metric is then that of the trained float32 weights, not of a bf16 forward
    whose rounding (8 bits of mantissa in every logit) would be part of the score and differ between replicas."""
    model.eval()
    outs = []
    batch = _eval_chunk(batch, model.replicas, split.y.device)
    for i in range(0, len(split), batch):
        feats = split.rows(i, i + batch).features()
        outs.append(model(feats).float())
    model.train()
    return torch.cat(outs, dim=1)


def _split_outputs(
    model: MTLModel, ds: TabularDataset, split_name: str, batch: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Every replica's raw outputs and labels ``(R, N, K)`` on one split, and its mean loss per task ``(R, K)``."""
    split = ds.splits[split_name]
    out = _outputs(model, split, batch)
    y = split.y if split.replicated else split.y.unsqueeze(0).expand(out.shape[0], -1, -1)
    return out, y, _task_losses(out, y, [t.kind for t in ds.tasks])


def _evaluate(
    model: MTLModel, ds: TabularDataset, split_name: str, batch: int
) -> list[dict[str, dict[str, float]]]:
    """Per replica: task -> metric -> value on one split (plus ``loss``: the mean summed task loss)."""
    out, y, task_losses = _split_outputs(model, ds, split_name, batch)
    losses = task_losses.sum(dim=1).cpu().numpy()
    out_np, y_np = out.cpu().numpy(), y.cpu().numpy()
    res = []
    for r in range(out.shape[0]):
        m = {t.name: task_metrics(t.kind, y_np[r, :, k], out_np[r, :, k]) for k, t in enumerate(ds.tasks)}
        m["_all"] = {"loss": float(losses[r])}
        res.append(m)
    return res


def _monitor_values(
    mon: _Monitor, model: MTLModel, ds: TabularDataset, split_name: str, batch: int
) -> tuple[list[float], np.ndarray]:
    """Per replica, the one validation number early stopping reads, computed as :func:`_evaluate` computes it
    (the same function on the same outputs, so the same value) without the task's and other tasks' other metrics;
    and, from the same outputs at no extra pass, each replica's loss per task ``(R, K)`` for its loss curve.
    """
    out, y, task_losses = _split_outputs(model, ds, split_name, batch)
    per_task = task_losses.cpu().numpy()
    if mon.task is None:
        return [float(v) for v in task_losses.sum(dim=1).cpu().numpy()], per_task
    k, kind = mon.task, ds.tasks[mon.task].kind
    out_np, y_np = out[..., k].cpu().numpy(), y[..., k].cpu().numpy()
    return [task_metric(kind, mon.metric, y_np[r], out_np[r]) for r in range(out.shape[0])], per_task


@dataclass
class _Replica:
    """One replica's bookkeeping: its seeds, curve, best epoch so far, patience and outcome."""

    init_seed: int
    data_seed: int
    generator: torch.Generator
    curve: list[dict[str, float]] = field(default_factory=list)
    best_value: float = float("nan")
    best_epoch: int = 0
    since_best: int = 0
    epochs_run: int = 0
    steps: int = 0
    status: str = "ok"
    reason: str = ""


def _check_shapes(
    model: MTLModel, dataset: TabularDataset, init_seeds: list[int], data_seeds: list[int]
) -> None:
    n_rep = model.replicas
    if len(init_seeds) != n_rep or len(data_seeds) != n_rep:
        raise ConfigError(f"need one init and one data seed per replica ({n_rep})")
    if dataset.replicas is not None and dataset.replicas != n_rep:
        raise ConfigError(
            f"dataset {dataset.name} holds {dataset.replicas} replicas' data, the model {n_rep}"
        )
    if len(dataset.tasks) != model.n_tasks:
        raise ConfigError(
            f"model has {model.n_tasks} task heads, dataset {dataset.name} has {len(dataset.tasks)}"
        )


def _compiled(model: MTLModel) -> Callable[[Features], Tensor]:
    """``torch.compile`` of the model, traced with the partitioner told to recompute views in the backward.

    Why: by default AOTAutograd's partitioner saves views of activations as they are and, for every ReLU whose
    output is only reachable through a view (the experts' block of the first layer's output), a boolean mask
    besides; Inductor's vectorised store of a boolean mask is an order of magnitude slower on the CPU than the float
    store beside it, which made the compiled step slower than eager from 8 x 32 experts on. With ``recompute_views`` the base is saved, the mask is
    recomputed inside the backward's fused loop, and no boolean tensor is written (bench/PROFILE.md, sixth pass).
    The setting is scoped to our calls (compilation happens lazily inside them, again when early stopping cuts
    replicas out) so a user's own compiled code is untouched.
    """
    compiled = torch.compile(model)

    def forward(feats: Features) -> Tensor:
        with torch._functorch.config.patch(recompute_views=True):
            out: Tensor = compiled(feats)
        return out

    return forward


class _Run:
    """One call of :func:`train`: the vectorised model, its optimiser, and the replicas still training."""

    def __init__(
        self, model: MTLModel, dataset: TabularDataset, config: TrainConfig, init: list[int], data: list[int]
    ) -> None:
        self.device = resolve_device(config.device)
        self.model, self.config = model, config
        self.amp = config.amp and bf16_autocast_ok(self.device)
        self.mon = _Monitor(config.early_stopping_metric, dataset)
        self.weighting: LossWeighting = create_weighting(
            config.loss_weighting, model.n_tasks, model.replicas, weights=config.loss_weights,
            alpha=config.gradnorm_alpha,
        )  # fmt: skip
        model.to(self.device)
        self.weighting.to(self.device)
        self.ds = dataset if dataset.device == self.device else dataset.to(self.device)
        self.ds_active = self.ds  # the active replicas' data (all of it unless the dataset is replicated)
        self.kinds = [t.kind for t in self.ds.tasks]
        self.task_names = [t.name for t in self.ds.tasks]
        self.task_train_loss = np.zeros((model.replicas, len(self.kinds)))  # the last epoch's, per task
        self.forward: Callable[[Features], Tensor] = model
        if config.compile:
            if self.device.type == "cpu":
                native_ops()  # resolved before tracing: the traced backward reads the loaded kernel (loaded_ops)
            self.forward = _compiled(model)
        self.params = list(model.parameters()) + list(self.weighting.parameters())
        self.opts = _make_optimizers(model, self.params, config)
        self.best_model = copy.deepcopy(model)  # holds each replica's best weights, all R of them
        self.active = list(range(model.replicas))  # original replica index of each row still training
        self.replicas = [
            _Replica(int(i), int(d), torch.Generator().manual_seed(int(d)))
            for i, d in zip(init, data, strict=True)
        ]
        self.step = 0
        self.max_steps = config.max_steps or math.inf
        self.t0 = time.perf_counter()

    def train_epoch(self, epoch: int) -> list[float]:
        """One pass over the epoch's training rows (the dataset's own, or fresh ones from a streaming generator) in
        each active replica's own order; its mean loss per replica."""
        split = self.ds_active.train_split(epoch)
        n, bs = len(split), self.config.batch_size
        perm = torch.stack([torch.randperm(n, generator=self.replicas[r].generator) for r in self.active])
        perm = perm.to(self.device)
        loss_sum = torch.zeros(len(self.active), device=self.device)
        task_sum = torch.zeros(len(self.active), len(self.kinds), device=self.device)
        batches = 0
        for i in range(0, n, bs):
            if self.step >= self.max_steps:
                break
            total, task_losses = self._step(split, perm[:, i : i + bs])
            loss_sum += total
            task_sum += task_losses
            batches += 1
            self.step += 1
        self.task_train_loss = (task_sum / max(batches, 1)).cpu().numpy()
        return (loss_sum / max(batches, 1)).tolist()

    def _step(self, split: Split, idx: Tensor) -> tuple[Tensor, Tensor]:
        """One optimiser step of every active replica; its objective ``(R,)`` and unweighted task losses ``(R, K)``."""
        feats, y = split.features(idx), split.labels(idx)
        for opt in self.opts:
            opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.forward(feats)
        task_losses = _task_losses(out, y, self.kinds)
        total = self.weighting.combine(task_losses, self.model)
        reg = self.model.regularization()
        if reg is not None:
            total = total + reg
        total.sum().backward()
        if self.config.grad_clip is not None:
            _clip_per_replica(self.params, self.config.grad_clip)
        for opt in self.opts:
            opt.step()
        self.weighting.after_step()
        return total.detach(), task_losses.detach()

    def judge(self, epoch: int, train_loss: list[float]) -> list[int]:
        """Record the epoch for every active replica, keep best weights, stop the diverged and the patient-out;
        return the rows that go on training."""
        values, valid_losses = _monitor_values(
            self.mon, self.model, self.ds_active, "valid", self.config.eval_batch_size
        )
        names = self.task_names
        keep: list[int] = []
        for row, r in enumerate(self.active):
            rep = self.replicas[r]
            rep.epochs_run, rep.steps = epoch, self.step
            value = values[row]
            rep.curve.append(
                {"epoch": epoch, "step": self.step, "train_loss": train_loss[row], "valid": value}
                | {
                    CURVE_SPLITS["train"] + t: float(self.task_train_loss[row, k])
                    for k, t in enumerate(names)
                }
                | {CURVE_SPLITS["valid"] + t: float(valid_losses[row, k]) for k, t in enumerate(names)}
            )
            if not math.isfinite(train_loss[row]):
                rep.status, rep.reason = "diverged", f"non-finite training loss at epoch {epoch}"
                continue
            if self.mon.better(value, rep.best_value):
                rep.best_value, rep.best_epoch, rep.since_best = value, epoch, 0
                _copy_replica(self.model, row, self.best_model, r)
            else:
                rep.since_best += 1
            if self.config.patience is not None and rep.since_best >= self.config.patience:
                continue
            keep.append(row)
        return keep

    def report(self, epoch: int, train_loss: list[float]) -> EpochReport:
        valid = [self.replicas[r].curve[-1]["valid"] for r in self.active]
        elapsed = time.perf_counter() - self.t0
        return EpochReport(epoch, self.step, list(self.active), train_loss, valid, self.mon.name, elapsed)

    def compact(self, keep: list[int]) -> None:
        """Cut the stopped replicas out of the model, the optimiser and the data, so they stop costing work."""
        select_replicas(self.model, keep, self.opts)
        select_replicas(self.weighting, keep, self.opts)
        self.params = list(self.model.parameters()) + list(self.weighting.parameters())
        self.active = [self.active[row] for row in keep]
        self.ds_active = self.ds.select_replicas(self.active)

    def state(self) -> dict[str, Any]:
        """Everything the next epoch depends on, for a checkpoint (:mod:`hpo.training.checkpoint`)."""
        return {
            "model": self.model.state_dict(),
            "best_model": self.best_model.state_dict(),
            "weighting": self.weighting.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.opts],
            "replicas": [
                {k: v for k, v in rep.__dict__.items() if k != "generator"}
                | {"generator": rep.generator.get_state()}
                for rep in self.replicas
            ],
            "active": list(self.active),
            "step": self.step,
            "task_train_loss": self.task_train_loss,
            "elapsed": time.perf_counter() - self.t0,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Put the run back as :meth:`state` found it: the stopped replicas cut out first, so that every tensor
        has the shape it was saved with. A state of another model (the code changed since it was written) is
        refused with ValueError before anything changes."""
        best, saved = self.best_model.state_dict(), state["best_model"]  # all replicas: never compacted
        if {k: v.shape for k, v in best.items()} != {k: v.shape for k, v in saved.items()} or len(
            self.opts
        ) != len(state["optimizers"]):
            raise ValueError("the checkpoint holds another model's state")
        if state["active"] != self.active:
            self.compact(list(state["active"]))  # every replica is active before: rows are original indices
        self.model.load_state_dict(state["model"])
        self.best_model.load_state_dict(state["best_model"])
        self.weighting.load_state_dict(state["weighting"])
        for opt, saved in zip(self.opts, state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        for rep, saved in zip(self.replicas, state["replicas"], strict=True):
            rep.generator.set_state(saved["generator"])
            for k, v in saved.items():
                if k != "generator":
                    setattr(rep, k, v)
        self.step, self.task_train_loss = int(state["step"]), state["task_train_loss"]
        self.t0 = time.perf_counter() - float(state["elapsed"])  # wall time counts the training, not the gap
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def results(self, splits: Sequence[str]) -> list[TrainResult]:
        """Every replica's best weights evaluated on ``splits``; the model ends holding them."""
        wall = time.perf_counter() - self.t0
        _restore(self.model, self.best_model)
        finals = {s: _evaluate(self.best_model, self.ds, s, self.config.eval_batch_size) for s in splits}
        out = []
        for r, rep in enumerate(self.replicas):
            if rep.best_epoch == 0 and rep.status == "ok":
                rep.status, rep.reason = "diverged", f"validation {self.mon.name} was never finite"
            out.append(
                TrainResult(
                    metrics={s: {k: v for k, v in finals[s][r].items() if k != "_all"} for s in splits},
                    curve=rep.curve,
                    best_epoch=rep.best_epoch,
                    best_value=rep.best_value,
                    metric_name=self.mon.name,
                    epochs_run=rep.epochs_run,
                    steps=rep.steps,
                    wall_time=wall,
                    device=str(self.device),
                    parameter_count=self.model.parameter_count(),
                    init_seed=rep.init_seed,
                    data_seed=rep.data_seed,
                    status=rep.status,
                    reason=rep.reason,
                    config=self.config.model_dump(),
                )
            )
        return out


def train(
    model: MTLModel,
    dataset: TabularDataset,
    config: TrainConfig,
    *,
    init_seeds: Sequence[int] | None = None,
    data_seeds: Sequence[int] | None = None,
    callback: Callable[[EpochReport], None] | None = None,
    evaluate_splits: Sequence[str] = SPLITS,
    checkpoint: Checkpoint | None = None,
) -> list[TrainResult]:
    """Train every replica of ``model`` on ``dataset``; return one :class:`TrainResult` per replica.

    ``init_seeds`` are only recorded (the model was initialised from them by ``create_model``); ``data_seeds``
    draw each replica's data order (default: the init seeds). The model ends holding each replica's best-epoch
    weights. With a ``checkpoint`` the run's state is written at the end of epochs (before the callback, which
    may stop the run), and a state already there for the same work is taken up instead of the first epochs.
    """
    init = list(init_seeds) if init_seeds is not None else list(range(model.replicas))
    data = list(data_seeds) if data_seeds is not None else list(init)
    _check_shapes(model, dataset, init, data)
    run = _Run(model, dataset, config, init, data)
    first = 1
    if checkpoint is not None and (state := checkpoint.load()) is not None:
        try:
            run.restore(state)
            first = int(state["epoch"]) + 1
            log.info("resumed from a checkpoint after epoch %d (%s)", state["epoch"], checkpoint.path)
        except ValueError as exc:
            checkpoint.resumed_epoch = 0
            log.warning("checkpoint %s not used (%s): training from the first epoch", checkpoint.path, exc)
    model.train()
    for epoch in range(first, config.epochs + 1):
        train_loss = run.train_epoch(epoch)
        keep = run.judge(epoch, train_loss)
        report = run.report(epoch, train_loss)
        log.debug("epoch %d: %d of %d replicas go on", epoch, len(keep), len(run.active))
        if len(keep) < len(run.active):
            if keep:
                run.compact(keep)
            else:
                run.active = []
        done = not run.active or run.step >= run.max_steps or epoch == config.epochs
        if checkpoint is not None and not done:
            checkpoint.save(epoch, run.state)
        if callback is not None:
            callback(report)
        if done:
            break
    return run.results(evaluate_splits)


def _restore(model: MTLModel, best: MTLModel) -> None:
    """Give ``model`` (possibly compacted) back all replicas, holding their best weights."""
    for (_, p), (_, q) in zip(model.named_parameters(), best.named_parameters(), strict=True):
        p.data = q.data.clone()
    for m in model.modules():
        if hasattr(m, "replicas"):
            object.__setattr__(m, "replicas", best.replicas)


@torch.no_grad()
def _copy_replica(src: MTLModel, row: int, dst: MTLModel, r: int) -> None:
    for p, q in zip(src.parameters(), dst.parameters(), strict=True):
        q[r].copy_(p[row])


def _make_optimizers(
    model: MTLModel, params: list[torch.nn.Parameter], cfg: TrainConfig
) -> list[torch.optim.Optimizer]:
    """The run's optimiser; with ``embedding_updates: rows`` and sparse fields, the embedding tables get sparse
    gradients and lazy Adam (``torch.optim.SparseAdam``, Adam's betas and epsilon) and the rest the usual Adam."""
    embeddings = [m for m in model.modules() if isinstance(m, FieldEmbeddings)]
    rows = cfg.embedding_updates == "rows"
    for m in embeddings:
        m.use_row_grads(rows)  # set either way: a model trained before may have had it on
    tables = {id(t) for m in embeddings for t in m.tables()} if rows else set()
    if not tables:
        return [_make_optimizer(params, cfg)]
    dense = [p for p in params if id(p) not in tables]
    sparse = [p for p in params if id(p) in tables]
    return [_make_optimizer(dense, cfg), torch.optim.SparseAdam(sparse, lr=cfg.lr)]


def _make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    # every update below is element-wise, so stacking replicas on one tensor cannot change any replica's update
    # fused: one kernel for all parameters instead of a dozen per parameter (also on the CPU)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def summarise(results: Sequence[TrainResult], split: str, task: str, metric: str) -> np.ndarray:
    """The metric across replicas, as an array (NaN for diverged replicas)."""
    return np.array([r.metrics[split][task][metric] for r in results])
