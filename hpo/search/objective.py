"""The Optuna objective: sample a configuration, build the model under the budget, train it, record everything.

Each trial stores, as user attributes, what is needed to understand it without rerunning it: the derived model
configuration, units per layer, parameter count, per-task metrics on every split, epochs, wall time, device,
seeds, package versions and code revision. A diverging run or an out-of-memory error is recorded as a pruned
trial with its reason (the worker goes on, and a NaN never becomes the best value).
"""

from __future__ import annotations

import functools
import logging
import math
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from hpo.config.space import SearchSpace
from hpo.config.study import StudySpec
from hpo.data._tabular import TabularDataset
from hpo.errors import ConfigError
from hpo.models import INPUT_SETTINGS, create_model, get_entry, kernel_provenance, probe_model
from hpo.schema import METRICS_BY_KIND, default_metric
from hpo.search import interrupts
from hpo.search.collapse import last_view
from hpo.search.factories import grid_points
from hpo.search.validate import check_space
from hpo.search.widen import current_spaces, expandable
from hpo.storage import keys
from hpo.storage.attrs import deferred_params, report_epoch, set_trial_attrs, write_proposal
from hpo.storage.checkpoints import checkpoint_path
from hpo.storage.claims import worker_seed
from hpo.training import EpochReport, TrainConfig, TrainResult, resolve_device, threads, train
from hpo.training.checkpoint import Checkpoint, fingerprint
from hpo.training.memory import activation_bytes_per_replica, cpu_chunk_cap
from hpo.training.metrics import HIGHER_IS_BETTER, chance_metric

__all__ = [
    "LIVE_SECONDS",
    "DuplicateConfiguration",
    "Objective",
    "chunk_checkpoint",
    "code_revision",
    "epoch_log",
    "live_writer",
    "objective_directions",
    "objective_names",
    "package_versions",
    "part_checkpoints",
    "same_configuration",
    "training_config",
    "valid_on_seeds",
]

log = logging.getLogger(__name__)


@functools.cache
def package_versions() -> dict[str, str]:
    import numpy
    import sklearn

    import hpo

    return {
        "hpo": hpo.__version__,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


@functools.cache
def code_revision() -> str:
    """The git commit of the hpo checkout (with ``-dirty`` when it has uncommitted changes), else ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _metric_for(spec: StudySpec, kind: str) -> str:
    return spec.objective.metric or default_metric(kind)


def objective_targets(spec: StudySpec, ds: TabularDataset) -> list[tuple[str, str]]:
    """The (task, metric) pairs the objective is made of, in order."""
    names = [t.name for t in ds.tasks]
    if spec.objective.task is not None and spec.objective.task not in names:
        raise ConfigError(
            f"{spec.source}: objective.task {spec.objective.task!r} is not a task of the dataset; "
            f"tasks: {names}"
        )
    main = spec.objective.task or names[0]
    kind_of = {t.name: t.kind for t in ds.tasks}
    if spec.objective.kind == "main":
        targets = [(main, _metric_for(spec, kind_of[main]))]
    else:
        if len({kind_of[n] for n in names}) > 1 and spec.objective.metric is None:
            raise ConfigError(
                f"{spec.source}: objective {spec.objective.kind!r} over binary and regression tasks "
                "needs an explicit objective.metric"
            )
        targets = [(n, _metric_for(spec, kind_of[n])) for n in names]
    for task, metric in targets:
        allowed = METRICS_BY_KIND[kind_of[task]]
        if metric not in allowed:
            raise ConfigError(
                f"{spec.source}: objective.metric {metric!r} does not apply to {kind_of[task]} task "
                f"{task!r}; allowed: {allowed}"
            )
    return targets


def objective_directions(spec: StudySpec, ds: TabularDataset) -> list[str]:
    targets = objective_targets(spec, ds)
    if spec.objective.kind == "mean":
        targets = targets[:1]
    return ["maximize" if HIGHER_IS_BETTER[m] else "minimize" for _, m in targets]


def objective_chance(spec: StudySpec, ds: TabularDataset) -> float | None:
    """The objective a model that learned nothing scores on the validation split (a constant output: the training
    labels' mean or base rate, :func:`hpo.training.metrics.chance_metric`), for a single objective (``main``, or
    ``mean`` over tasks of one metric); ``None`` where it is not defined or there are several objectives."""
    if spec.objective.kind == "multi":
        return None
    names = [t.name for t in ds.tasks]
    train_y, valid_y = ds.splits["train"].y, ds.splits["valid"].y
    levels = []
    for task, metric in objective_targets(spec, ds):
        k = names.index(task)
        y_tr, y_va = (y[..., k].reshape(-1).cpu().numpy() for y in (train_y, valid_y))
        levels.append(chance_metric(ds.tasks[k].kind, metric, y_tr, y_va))
    level = float(np.mean(levels))
    return level if math.isfinite(level) else None


def objective_names(spec: StudySpec, ds: TabularDataset) -> list[str]:
    targets = objective_targets(spec, ds)
    if spec.objective.kind == "mean":
        return [f"valid mean {targets[0][1].upper()} over tasks"]
    return [f"valid {task} {metric.upper()}" for task, metric in targets]


def split_sampled(sampled: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The optimiser space's sampled values as (model input settings, training settings)."""
    model = {k: v for k, v in sampled.items() if k in INPUT_SETTINGS}
    return model, {k: v for k, v in sampled.items() if k not in INPUT_SETTINGS}


def training_config(
    spec: StudySpec, targets: list[tuple[str, str]], device: str, sampled: dict[str, Any] | None = None
) -> TrainConfig:
    """The study's ``training`` block with the sampled optimiser settings over it, early stopping on the main
    objective. Without ``sampled``: the documented default an untuned run gets."""
    base = spec.training.model_dump()
    base["device"] = device
    known = set(TrainConfig.model_fields)
    for k, v in (sampled or {}).items():
        if k not in known:
            raise ConfigError(
                f"optimizer space parameter {k!r} is not a training setting; known: {sorted(known)}"
            )
        base[k] = v
    main_task, main_metric = targets[0]
    base["early_stopping_metric"] = f"{main_task}.{main_metric}"
    return TrainConfig(**base)


class TrialPrunedWithReason(optuna.TrialPruned):
    pass


class DuplicateConfiguration(Exception):
    """The sampler proposed exactly the parameters of a finished trial: this trial fails at once and its ticket is
    queued again for a fresh proposal (the worker loop does that), so no configuration is trained twice."""


MAX_RESAMPLES = 2
LIVE_SECONDS = 1.0  # without a pruner, a trial's live line and epoch values are written at most this often
PROBE_SEED = (
    7_000_000  # the seed-spread probe's first seed, far from every tuning trial's (seed * 100003 + n)
)


IN_FLIGHT = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.RUNNING,
)


def same_configuration(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """A finished or running trial of the study with exactly ``trial``'s parameters, if any (a finished one
    first). Workers propose under the study's lock (:mod:`hpo.search.worker`), so a running trial's parameters
    are already stored when the next worker proposes."""
    params = trial.params
    same = [
        t
        for t in trial.study.get_trials(deepcopy=False, states=IN_FLIGHT)
        if t.number != trial.number and t.params == params
    ]
    return min(same, key=lambda t: (t.state == optuna.trial.TrialState.RUNNING, t.number), default=None)


def _finished(
    study: optuna.Study, number: int, fail_stale: Callable[[optuna.Study], None], poll: float = 0.5
) -> optuna.trial.FrozenTrial:
    """Trial ``number`` once it is no longer RUNNING (a dead owner's trial is failed by its stale heartbeat)."""
    while (t := study.get_trials(deepcopy=False)[number]).state == optuna.trial.TrialState.RUNNING:
        interrupts.check()
        fail_stale(study)
        time.sleep(poll)
    return t


def _reuse(trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> float | list[float]:
    """Take an earlier trial's result for the same configuration (after MAX_RESAMPLES fresh proposals were all
    duplicates too, as on a small categorical space), saying so on the trial."""
    skip = (
        keys.TICKET,
        keys.RESAMPLES,
        keys.LIVE,
        keys.DUPLICATE_OF,
        keys.WORKER_ID,
        keys.SAMPLER_SEED,
        keys.PROPOSAL_SECONDS,
    )
    taken = {keys.key(k): v for k, v in keys.plain(earlier.user_attrs).items() if k not in skip}
    set_trial_attrs(trial, {**taken, keys.key(keys.REUSED_FROM): earlier.number})
    if earlier.state != optuna.trial.TrialState.COMPLETE or earlier.values is None:
        trial.set_user_attr(
            keys.key(keys.PRUNED_REASON), f"same configuration as pruned trial {earlier.number}"
        )
        raise TrialPrunedWithReason(f"same configuration as trial {earlier.number}")
    return earlier.values if len(earlier.values) > 1 else earlier.values[0]


def epoch_log(name: str, epochs: int, every: float = 60.0) -> Callable[[EpochReport], None]:
    """A log line at most once a minute while seeds train outside a tuning trial (the seed probe, a retraining
    chunk): at full size one can take most of an hour, with nothing else to show for it in a log."""
    last = [0.0]

    def report(r: EpochReport) -> None:
        if r.elapsed - last[0] >= every:
            last[0] = r.elapsed
            log.info(
                "%s: epoch %d of at most %d, %d seeds still training, %.0f s", name, r.epoch, epochs,
                len(r.replicas), r.elapsed,
            )  # fmt: skip

    return report


def live_writer(trial: optuna.Trial, worker: int) -> Callable[[EpochReport], None]:
    """Per epoch, the trial's live attribute (worker, epoch, the seeds still training and their mean validation
    metric), written at most every ``LIVE_SECONDS``: what ``hpo status`` and the dashboard show of a retraining
    chunk or a probe ticket, whose seeds train for up to an hour with nothing else stored until they finish."""
    last = [time.monotonic()]

    def write(rep: EpochReport) -> None:
        if time.monotonic() - last[0] >= LIVE_SECONDS:
            finite = [v for v in rep.valid_metric if math.isfinite(v)]
            live = {"worker": worker, "epoch": rep.epoch, "metric": rep.metric_name}
            live |= {"value": float(np.mean(finite)) if finite else None, "training": len(rep.replicas)}
            set_trial_attrs(trial, {keys.key(keys.LIVE): live})
            last[0] = time.monotonic()

    return write


def chunk_checkpoint(url: str | None, study: str, name: str, **what: Any) -> Checkpoint | None:
    """The checkpoint of one chunk of work (``name`` in study ``study``; ``what`` it trains: a file written for
    anything else is ignored), where the storage keeps them (:mod:`hpo.storage.checkpoints`); None without."""
    path = None if url is None else checkpoint_path(url, study, name)
    return None if path is None else Checkpoint(path, fingerprint(**what))


def _part_size(
    spec: StudySpec, arch: str, ds: TabularDataset, hyper: dict[str, Any], cfg: TrainConfig, n: int
) -> int:
    """How many of ``n`` seeds train together: all on a GPU, :func:`hpo.training.memory.cpu_chunk_cap` on a CPU."""
    if resolve_device(cfg.device).type == "cuda":
        return n
    probe = probe_model(arch, ds.spec, ds.tasks, budget=spec.budget, **hyper)
    units = [u.units for u in probe.layer_units()]
    return min(n, cpu_chunk_cap(activation_bytes_per_replica(units, cfg.batch_size)))


def part_checkpoints(
    url: str | None, study: str, prefix: str, hyper: dict[str, Any], cfg: TrainConfig, ds: TabularDataset
) -> Callable[[list[int]], Checkpoint | None]:
    """Each part's checkpoint for :func:`valid_on_seeds` (``PREFIX-seeds-FIRST-LAST`` in ``study``): a wide
    configuration's probe seed trains for up to an hour on a CPU, and a stopped one resumes."""
    return lambda part: chunk_checkpoint(
        url, study, f"{prefix}-seeds-{part[0]}-{part[-1]}",
        hyper=hyper, train=cfg.model_dump(), seeds=part, dataset=ds.name,
    )  # fmt: skip


def valid_on_seeds(
    spec: StudySpec,
    arch: str,
    ds: TabularDataset,
    hyper: dict[str, Any],
    cfg: TrainConfig,
    seeds: list[int],
    targets: list[tuple[str, str]],
    label: str,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_part: Callable[[dict[int, float]], None] | None = None,
    checkpoint: Callable[[list[int]], Checkpoint | None] | None = None,
) -> list[float]:
    """The validation objective (the mean of ``targets``' metrics) of configuration ``hyper`` trained with
    ``cfg`` from each of ``seeds`` (initialisation and data order alike), as vectorised models; NaN where a seed
    diverged. Only the validation split is evaluated: the probes that call it choose among configurations, and
    the test split stays unseen. On a CPU the seeds go in chunks of :func:`hpo.training.memory.cpu_chunk_cap`,
    as a retrain's do: a wide configuration trains faster one seed at a time there. ``on_epoch`` sees every
    epoch besides the log line (a probe ticket's live attribute); ``on_part`` each part's seeds and values as
    soon as they are known (a probe ticket records them, so that a killed ticket's retry need not train them
    again); ``checkpoint`` gives each part's checkpoint (a stopped part resumes at its last epoch written)."""
    n = len(seeds)
    chunk = _part_size(spec, arch, ds, hyper, cfg, n)
    values: list[float] = []

    def callback(log_line: Callable[[EpochReport], None]) -> Callable[[EpochReport], None]:
        def both(rep: EpochReport) -> None:
            log_line(rep)
            if on_epoch is not None:
                on_epoch(rep)

        return both

    for part in (seeds[i : i + chunk] for i in range(0, n, chunk)):
        model = create_model(
            arch, ds.spec, ds.tasks, replicas=len(part), seeds=part, budget=spec.budget, **hyper
        )
        threads.for_trial(cfg.threads)
        results = train(
            model,
            ds,
            cfg,
            init_seeds=part,
            data_seeds=part,
            callback=callback(epoch_log(f"{arch} {label}", cfg.epochs)),  # per part: its clock starts at 0
            evaluate_splits=("valid",),  # the only split it reads
            checkpoint=(ckpt := None if checkpoint is None else checkpoint(part)),
        )
        done = [
            float(np.mean([r.metric("valid", task, metric) for task, metric in targets]))
            if r.status == "ok"
            else float("nan")
            for r in results
        ]
        if on_part is not None:
            on_part(dict(zip(part, done, strict=True)))
        if ckpt is not None:
            ckpt.clear()  # after on_part has recorded the values: a stop in between loses nothing
        values += done
    return values


class Objective:
    """Callable objective for one architecture of a study; ``on_epoch`` feeds live progress."""

    def __init__(
        self,
        spec: StudySpec,
        arch: str,
        dataset: TabularDataset,
        device: str,
        on_epoch: Callable[[optuna.Trial, EpochReport], None] | None = None,
        worker: int = 0,
        worker_id: int | None = None,
        url: str | None = None,
    ) -> None:
        self.worker, self.worker_id, self.url = (
            worker,
            worker_id,
            url,
        )  # url: where the probe's checkpoints go
        self._unwritten: dict[int, float] = {}  # epoch values not yet written (see _epoch_callback)
        self.spec, self.arch, self.ds, self.device = spec, arch, dataset, device
        self.space = spec.spaces()[arch]
        self.opt_space = spec.optimizer_space_loaded()
        self.widening = expandable([self.space, self.opt_space])
        self.targets = objective_targets(spec, dataset)
        self.on_epoch = on_epoch
        self.multi = spec.objective.kind == "multi"
        # called once the trial's configuration is proposed and checked: the worker loop holds the study's lock
        # until then, so that concurrent workers never propose the same configuration at once
        self.after_proposal: Callable[[], None] = lambda: None
        self.fail_stale: Callable[[optuna.Study], None] = lambda study: (
            None
        )  # the worker loop's, while waiting

    def finite_points(self) -> list[dict[str, Any]] | None:
        """Every configuration of a space made only of categorical parameters (its grid), else ``None``: where
        the points are few, a ticket whose proposals keep repeating is given an untried point."""
        if not hasattr(self, "_points"):
            try:
                self._points: list[dict[str, Any]] | None = grid_points([self.space, self.opt_space])
            except ConfigError:
                self._points = None
        return self._points

    @property
    def higher_is_better(self) -> bool:
        return objective_directions(self.spec, self.ds)[0] == "maximize"

    @functools.cached_property
    def chance(self) -> float | None:
        """The objective a model that learned nothing scores (:func:`objective_chance`): a probe seed at that
        level collapsed (:func:`hpo.estimators.seed_spread`)."""
        return objective_chance(self.spec, self.ds)

    def probe_seeds(
        self,
        best: optuna.trial.FrozenTrial,
        n: int,
        start: int = 0,
        on_part: Callable[[list[float]], None] | None = None,
    ) -> list[float]:
        """The objective of ``best``'s configuration on each of ``n`` seeds (trained as vectorised models on the
        validation split, seeds apart from any tuning trial's; NaN where a seed failed; :func:`valid_on_seeds`):
        what the settled rule's ``tolerance: auto`` measures the seed noise from
        (:func:`hpo.estimators.seed_spread`, :mod:`hpo.search.settle`). ``on_part`` sees each part's values, in
        seed order, as they finish (the rule records them, so that a stopped probe resumes)."""
        model_params = {k: best.params[k] for k in self.space.params if k in best.params}
        inputs, opt_params = split_sampled(
            {k: best.params[k] for k in self.opt_space.params if k in best.params}
        )
        hyper = self.space.derive(model_params, len(self.ds.tasks)) | inputs
        seeds = [PROBE_SEED + start + i for i in range(n)]
        cfg = self._train_config(opt_params)
        return valid_on_seeds(
            self.spec,
            self.arch,
            self.ds,
            hyper,
            cfg,
            seeds,
            self.targets,
            "probe",
            on_part=None if on_part is None else lambda part: on_part(list(part.values())),
            checkpoint=part_checkpoints(
                self.url, self.spec.study_name(self.arch), f"probe-trial-{best.number}", hyper, cfg, self.ds
            ),
        )

    def fits_budget(self, space: SearchSpace) -> bool:
        """Whether every configuration of ``space`` (this architecture's, perhaps widened) keeps within the
        budget, built on the meta device (:func:`hpo.search.validate.check_space`); an optimiser space always
        does."""
        if set(space.params) <= set(self.opt_space.params):
            return True
        report = check_space(
            space, self.arch, len(self.ds.tasks), budget=self.spec.budget, seed=self.spec.seed
        )
        return not report.problems

    def _train_config(self, sampled: dict[str, Any]) -> TrainConfig:
        return training_config(self.spec, self.targets, self.device, sampled)

    def _tried_before(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """The finished or running trial with this proposal's configuration, if any (never on a grid: every grid
        ticket carries its own point)."""
        return None if self.spec.sampler.name == "grid" else same_configuration(trial)

    def _check_new(
        self, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial
    ) -> float | list[float] | None:
        """For a configuration ``earlier`` tried: raise for a fresh proposal, or reuse its result (``None``: it
        failed with its worker, train it here)."""
        if int(keys.plain(trial.user_attrs).get(keys.RESAMPLES, 0)) >= MAX_RESAMPLES:
            if (
                earlier.state == optuna.trial.TrialState.RUNNING
            ):  # every point is tried or running: wait for it
                self.after_proposal()  # other workers may go on meanwhile
                earlier = _finished(trial.study, earlier.number, self.fail_stale)
                if earlier.state == optuna.trial.TrialState.FAIL:  # its worker died: train it here instead
                    trial.set_user_attr(keys.key(keys.SAME_AS_FAILED), earlier.number)
                    return None
            return _reuse(trial, earlier)
        trial.set_user_attr(keys.key(keys.DUPLICATE_OF), earlier.number)
        raise DuplicateConfiguration(f"the sampler proposed trial {earlier.number}'s configuration again")

    def _epoch_callback(self, trial: optuna.Trial) -> Callable[[EpochReport], None]:
        """Live progress for this worker's display and for a coordinator elsewhere; pruning where asked.

        With a pruner, every epoch's value is written as it ends (the pruner reads them). Without one, an epoch's
        value and live line are written at most every ``LIVE_SECONDS`` and the rest with the trial's outcome
        (:meth:`_values`): a study of cheap trials would otherwise pay a database sync per epoch."""
        pruning = not isinstance(trial.study.pruner, optuna.pruners.NopPruner)
        self._unwritten = {}
        last = [time.monotonic()]

        def callback(rep: EpochReport) -> None:
            interrupts.check()
            if self.on_epoch is not None:
                self.on_epoch(trial, rep)
            value = rep.valid_metric[0]
            live = {"worker": self.worker, "epoch": rep.epoch, "metric": rep.metric_name}
            live["value"] = value if math.isfinite(value) else None
            if not self.multi and math.isfinite(value):
                self._unwritten[rep.epoch] = value
            if pruning or time.monotonic() - last[0] >= LIVE_SECONDS:
                report_epoch(trial, self._unwritten, {keys.key(keys.LIVE): live})
                self._unwritten, last[0] = {}, time.monotonic()
            if pruning and not self.multi and math.isfinite(value) and trial.should_prune():
                trial.set_user_attr(keys.key(keys.PRUNED_REASON), f"pruner stopped it at epoch {rep.epoch}")
                raise optuna.TrialPruned(f"epoch {rep.epoch}: {rep.metric_name} {value:.4f}")

        return callback

    def _setup(
        self, trial: optuna.Trial, hyper: dict[str, Any], cfg: TrainConfig, seed: int
    ) -> dict[str, Any]:
        """What the trial will train (its stored attributes), written with what was built from it, or alone if
        the model fails to build (so such a configuration still shows)."""
        attrs: dict[str, Any] = {
            keys.ARCHITECTURE: self.arch,
            keys.MODEL_ORIGIN: get_entry(self.arch).origin,
            keys.MODEL_CONFIG: {k: list(v) if isinstance(v, tuple) else v for k, v in hyper.items()},
            keys.TRAIN_CONFIG: cfg.model_dump(),
            keys.INIT_SEED: seed,
            keys.DATA_SEED: seed,
            keys.VERSIONS: package_versions(),
            keys.CODE_REVISION: code_revision(),
            keys.KERNEL: kernel_provenance(
                self.device
            ),  # compiled or fallback (and why): rounding can differ
        }
        if changes := keys.plain(trial.study.user_attrs).get(keys.CHANGES):  # resumed with --allow-changed
            attrs[keys.DEFINITION_CHANGES] = changes
        return {keys.key(k): v for k, v in attrs.items()}

    def _values(self, trial: optuna.Trial, result: TrainResult) -> float | list[float]:
        """Record the run's outcome on the trial; its objective value(s), or pruned with the reason."""
        outcome = (keys.METRICS, keys.EPOCHS_RUN, keys.BEST_EPOCH, keys.WALL_TIME, keys.DEVICE, keys.CURVE)
        report_epoch(trial, self._unwritten, {keys.key(k): getattr(result, k) for k in outcome})
        self._unwritten = {}
        if result.status != "ok":
            trial.set_user_attr(keys.key(keys.PRUNED_REASON), result.reason)
            raise TrialPrunedWithReason(result.reason)
        values = [result.metric("valid", task, metric) for task, metric in self.targets]
        if not all(math.isfinite(v) for v in values):
            trial.set_user_attr(keys.key(keys.PRUNED_REASON), f"non-finite objective {values}")
            raise TrialPrunedWithReason("non-finite objective")
        if self.spec.objective.kind == "mean":
            return float(sum(values) / len(values))
        return values if self.multi else values[0]

    def _proposal_attrs(self, trial: optuna.Trial, seconds: float) -> dict[str, Any]:
        """What a proposal records on its trial: the sampler's time, the worker and its sampler seed, and what
        the GP saw as collapsed where it saw anything (:mod:`hpo.search.collapse`)."""
        proposed: dict[str, Any] = {keys.PROPOSAL_SECONDS: seconds}
        if (view := last_view(trial.study.sampler)) is not None:
            proposed[keys.SAMPLER_VIEW] = view
        if self.worker_id is not None:
            proposed |= {
                keys.WORKER_ID: self.worker_id,
                keys.SAMPLER_SEED: worker_seed(self.spec.sampler.seed, self.worker_id),
            }
        return {keys.key(k): v for k, v in proposed.items()}

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        started = time.perf_counter()
        space, opt_space = self.space, self.opt_space
        if self.widening:  # the ranges the settled rule has widened so far, as recorded on the study
            space, opt_space = current_spaces(trial.study, [space, opt_space])
        with deferred_params(trial) as params:  # written below with the proposal's attributes, at once
            sampled_model = space.suggest(trial)  # the sampler proposes here (relative sampling is lazy)
            sampled_opt = opt_space.suggest(trial)
        proposal = self._proposal_attrs(trial, time.perf_counter() - started)
        if (earlier := self._tried_before(trial)) is not None:  # written as proposed, then judged
            write_proposal(trial, params, proposal)
            reused = self._check_new(trial, earlier)
            self.after_proposal()
            if reused is not None:
                return reused
            params, proposal = [], {}
        inputs, sampled_opt = split_sampled(sampled_opt)
        hyper = self.space.derive(sampled_model, len(self.ds.tasks)) | inputs
        cfg = self._train_config(sampled_opt)
        seed = self.spec.seed * 100_003 + trial.number
        setup = self._setup(trial, hyper, cfg, seed)
        try:
            model = create_model(
                self.arch, self.ds.spec, self.ds.tasks, seeds=[seed], budget=self.spec.budget, **hyper
            )
        except BaseException:
            write_proposal(trial, params, proposal | setup)  # a configuration that fails to build still shows
            raise
        built = {
            keys.UNITS_PER_LAYER: [u.units for u in model.layer_units()],
            keys.PARAMETER_COUNT: model.parameter_count(),
            keys.LIVE: {"worker": self.worker, "epoch": 0},
            keys.THREADS: threads.for_trial(cfg.threads),
        }
        # the proposal, what it sets up and what was built from it: one transaction, then other workers propose
        write_proposal(trial, params, proposal | setup | {keys.key(k): v for k, v in built.items()})
        self.after_proposal()
        try:
            (result,) = train(
                model,
                self.ds,
                cfg,
                init_seeds=[seed],
                data_seeds=[seed],
                callback=self._epoch_callback(trial),
            )
        except torch.cuda.OutOfMemoryError as exc:
            report_epoch(trial, self._unwritten, {})
            trial.set_user_attr(
                keys.key(keys.PRUNED_REASON), f"out of memory on {self.device}: {str(exc).splitlines()[0]}"
            )
            raise TrialPrunedWithReason("out of memory") from None
        return self._values(trial, result)
