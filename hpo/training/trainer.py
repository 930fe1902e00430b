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
from hpo.training.metrics import HIGHER_IS_BETTER, task_metrics
from hpo.training.weighting import LossWeighting, create_weighting

__all__ = ["EpochReport", "TrainResult", "resolve_device", "train"]


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
    """``(R, B, K)`` outputs and ``(R, B, K)`` labels -> ``(R, K)`` mean losses (BCE on logits, or MSE)."""
    cols = []
    for k, kind in enumerate(kinds):
        o = out[..., k]
        if o.dtype in (torch.float16, torch.bfloat16):
            o = o.float()
        t = y[..., k].to(o.dtype)
        if kind == "binary":
            cols.append(F.binary_cross_entropy_with_logits(o, t, reduction="none").mean(dim=1))
        else:
            cols.append((o - t).pow(2).mean(dim=1))
    return torch.stack(cols, dim=1)


def _clip_per_replica(params: Sequence[Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` applied to each replica separately (the norm of a lone run's gradient)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    sq = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))


class _Monitor:
    """Which validation number decides early stopping and model selection, and in which direction."""

    def __init__(self, spec: str, dataset: TabularDataset) -> None:
        names = [t.name for t in dataset.tasks]
        if not spec:
            first = dataset.tasks[0]
            spec = f"{first.name}.{'auc' if first.kind == 'binary' else 'mse'}"
        self.name = spec
        if spec == "loss":
            self.task, self.metric = None, "loss"
        else:
            task, _, metric = spec.partition(".")
            if task not in names:
                raise ConfigError(f"early_stopping_metric {spec!r}: unknown task {task!r}; tasks: {names}")
            kind = dataset.tasks[names.index(task)].kind
            allowed = ("auc", "logloss") if kind == "binary" else ("mse", "r2")
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


@torch.no_grad()
def _outputs(model: MTLModel, split: Split, batch: int, amp: bool) -> Tensor:
    """Raw outputs ``(R, N, K)`` of every replica on a whole split, in chunks."""
    model.eval()
    outs = []
    for i in range(0, len(split), batch):
        feats = split.rows(i, i + batch).features()
        with torch.autocast(split.y.device.type, dtype=torch.bfloat16, enabled=amp):
            outs.append(model(feats).float())
    model.train()
    return torch.cat(outs, dim=1)


def _evaluate(
    model: MTLModel, ds: TabularDataset, split_name: str, batch: int, amp: bool
) -> list[dict[str, dict[str, float]]]:
    """Per replica: task -> metric -> value on one split (plus ``loss``: the mean summed task loss)."""
    split = ds.splits[split_name]
    out = _outputs(model, split, batch, amp)
    kinds = [t.kind for t in ds.tasks]
    y = split.y if split.replicated else split.y.unsqueeze(0).expand(out.shape[0], -1, -1)
    losses = _task_losses(out, y, kinds).sum(dim=1).cpu().numpy()
    out_np, y_np = out.cpu().numpy(), y.cpu().numpy()
    res = []
    for r in range(out.shape[0]):
        m = {t.name: task_metrics(t.kind, y_np[r, :, k], out_np[r, :, k]) for k, t in enumerate(ds.tasks)}
        m["_all"] = {"loss": float(losses[r])}
        res.append(m)
    return res


def _monitor_value(mon: _Monitor, m: dict[str, dict[str, float]], ds: TabularDataset) -> float:
    if mon.task is None:
        return m["_all"]["loss"]
    return m[ds.tasks[mon.task].name][mon.metric]


def train(
    model: MTLModel,
    dataset: TabularDataset,
    config: TrainConfig,
    *,
    init_seeds: Sequence[int] | None = None,
    data_seeds: Sequence[int] | None = None,
    callback: Callable[[EpochReport], None] | None = None,
    evaluate_splits: Sequence[str] = SPLITS,
) -> list[TrainResult]:
    """Train every replica of ``model`` on ``dataset``; return one :class:`TrainResult` per replica.

    ``init_seeds`` are only recorded (the model was initialised from them by ``create_model``); ``data_seeds``
    draw each replica's data order (default: the init seeds). The model ends holding each replica's best-epoch
    weights.
    """
    device = resolve_device(config.device)
    n_rep = model.replicas
    init_seeds = list(init_seeds) if init_seeds is not None else list(range(n_rep))
    data_seeds = list(data_seeds) if data_seeds is not None else list(init_seeds)
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
    amp = config.amp and device.type == "cuda"
    mon = _Monitor(config.early_stopping_metric, dataset)
    weights = config.loss_weights
    weighting: LossWeighting = create_weighting(
        config.loss_weighting, model.n_tasks, n_rep, weights=weights, alpha=config.gradnorm_alpha
    )
    model.to(device)
    weighting.to(device)
    ds = dataset if dataset.device == device else dataset.to(device)
    ds_active = ds  # the active replicas' data (all of it unless the dataset is replicated)
    train_split = ds.splits["train"]
    n = len(train_split)
    kinds = [t.kind for t in ds.tasks]
    params = list(model.parameters()) + list(weighting.parameters())
    opt = _make_optimizer(params, config)
    best_model = copy.deepcopy(model)  # holds each replica's best weights, all R of them
    active = list(range(n_rep))  # original replica index of each row still training
    gens = [torch.Generator().manual_seed(int(s)) for s in data_seeds]
    curves: list[list[dict[str, float]]] = [[] for _ in range(n_rep)]
    best_value = [float("nan")] * n_rep
    best_epoch = [0] * n_rep
    since_best = [0] * n_rep
    epochs_run = [0] * n_rep
    steps_run = [0] * n_rep
    status = ["ok"] * n_rep
    reason = [""] * n_rep
    step = 0
    t0 = time.perf_counter()
    max_steps = config.max_steps or math.inf
    model.train()
    for epoch in range(1, config.epochs + 1):
        perm = torch.stack([torch.randperm(n, generator=gens[r]) for r in active]).to(device)
        loss_sum = torch.zeros(len(active), device=device)
        batches = 0
        for i in range(0, n, config.batch_size):
            if step >= max_steps:
                break
            idx = perm[:, i : i + config.batch_size]
            feats = train_split.features(idx)
            y = train_split.labels(idx)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(feats)
            losses = _task_losses(out, y, kinds)
            total = weighting.combine(losses, model)
            reg = model.regularization()
            if reg is not None:
                total = total + reg
            total.sum().backward()
            if config.grad_clip is not None:
                _clip_per_replica(params, config.grad_clip)
            opt.step()
            weighting.after_step()
            loss_sum += total.detach()
            batches += 1
            step += 1
        train_loss = (loss_sum / max(batches, 1)).tolist()
        evals = _evaluate(model, ds_active, "valid", config.eval_batch_size, amp)
        keep: list[int] = []
        for row, r in enumerate(active):
            epochs_run[r], steps_run[r] = epoch, step
            value = _monitor_value(mon, evals[row], ds)
            curves[r].append({"epoch": epoch, "step": step, "train_loss": train_loss[row], "valid": value})
            if not math.isfinite(train_loss[row]):
                status[r], reason[r] = "diverged", f"non-finite training loss at epoch {epoch}"
                continue
            if mon.better(value, best_value[r]):
                best_value[r], best_epoch[r], since_best[r] = value, epoch, 0
                _copy_replica(model, row, best_model, r)
            else:
                since_best[r] += 1
            if config.patience is not None and since_best[r] >= config.patience:
                continue
            keep.append(row)
        if callback is not None:
            callback(
                EpochReport(
                    epoch,
                    step,
                    list(active),
                    train_loss,
                    [curves[r][-1]["valid"] for r in active],
                    mon.name,
                    time.perf_counter() - t0,
                )
            )
        if len(keep) < len(active):
            if not keep:
                active = []
                break
            select_replicas(model, keep, opt)
            select_replicas(weighting, keep, opt)
            params = list(model.parameters()) + list(weighting.parameters())
            active = [active[row] for row in keep]
            ds_active = ds.select_replicas(active)
            train_split = ds_active.splits["train"]
        if step >= max_steps:
            break
    wall = time.perf_counter() - t0
    # final evaluation of every replica's best weights
    _restore(model, best_model)
    finals = {s: _evaluate(best_model, ds, s, config.eval_batch_size, amp) for s in evaluate_splits}
    results = []
    for r in range(n_rep):
        if best_epoch[r] == 0 and status[r] == "ok":
            status[r], reason[r] = "diverged", f"validation {mon.name} was never finite"
        results.append(
            TrainResult(
                metrics={s: {k: v for k, v in finals[s][r].items() if k != "_all"} for s in evaluate_splits},
                curve=curves[r],
                best_epoch=best_epoch[r],
                best_value=best_value[r],
                metric_name=mon.name,
                epochs_run=epochs_run[r],
                steps=steps_run[r],
                wall_time=wall,
                device=str(device),
                parameter_count=model.parameter_count(),
                init_seed=int(init_seeds[r]),
                data_seed=int(data_seeds[r]),
                status=status[r],
                reason=reason[r],
                config=config.model_dump(),
            )
        )
    return results


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
