"""Retrain each architecture's best configuration from scratch over many seeds, through the same database.

Per architecture a retrain study ``SPEC/ARCH/retrain`` holds one enqueued trial per chunk of seeds (tickets, as
for tuning), so any worker on any machine can take chunks, a dead worker's chunk is retried by the heartbeat
machinery, and running again resumes. A chunk trains its seeds as one vectorised model (the chunk size is chosen
from the device's free memory unless the spec fixes it) and stores every seed's metrics in the results tables,
keyed by (spec, architecture, seed): a retried chunk can never double a result.

The same machinery retrains each architecture's documented default configuration (``retrain.default``; study
``SPEC.default``, tuning trial -1) and runs crossed designs (``retrain.cross``: initialisation x data-order seeds x draws of the held-out rows).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch

from hpo.config import naming
from hpo.config.naming import cross_cell, seeds_of, select_study_name
from hpo.config.study import StudySpec, sweep_value
from hpo.data._tabular import TabularDataset
from hpo.data.synthetic import SyntheticConfig
from hpo.errors import ConfigError
from hpo.models import MTLModel, create_model, gate_utilisation, get_entry, kernel_provenance, probe_model
from hpo.search import interrupts
from hpo.search.objective import (
    chunk_checkpoint,
    code_revision,
    epoch_log,
    live_writer,
    objective_directions,
    objective_targets,
    package_versions,
    training_config,
)
from hpo.search.processes import check_workers_done, with_children, with_signals
from hpo.search.select import SelectObjective, prepare_select, probe_finished, selection
from hpo.search.studies import load_study_dataset, tuning_left
from hpo.search.tickets import ensure_tickets
from hpo.search.worker import drain
from hpo.storage import keys
from hpo.storage.attrs import set_trial_attrs
from hpo.storage.engine import normalise_url, open_storage
from hpo.storage.heartbeat import fail_dead_workers
from hpo.storage.locks import claim_lock
from hpo.storage.results import curve_rows, seed_rows, store_seed_results
from hpo.training import EpochReport, TrainConfig, TrainResult, resolve_device, threads, train
from hpo.training.checkpoint import Checkpoint
from hpo.training.memory import activation_bytes_per_replica, bytes_per_replica, replicas_that_fit

log = logging.getLogger(__name__)

__all__ = [
    "Chosen",
    "best_trial",
    "default_choice",
    "prepare_retrain",
    "retrain_specs",
    "retrain_study_name",
    "run_retrain",
    "seeds_of",
]


Queue = tuple[optuna.Study, Callable[[Any], Any]]  # a study and the objective its tickets run


def retrain_study_name(spec: StudySpec, arch: str) -> str:
    return naming.retrain_study_name(spec.name, arch)


def dataset_seed_of(spec: StudySpec, seed: int) -> int:
    """The generator seed of retrain seed ``seed``'s own dataset (``retrain.fresh_data``): a pure function of the
    spec's dataset seed and the retrain seed, so a retried chunk regenerates exactly the same data."""
    assert isinstance(spec.dataset, SyntheticConfig), "fresh data is drawn for synthetic studies only"
    return int(np.random.SeedSequence([spec.dataset.seed, seed]).generate_state(1)[0])


def fresh_datasets(spec: StudySpec, seeds: Sequence[int]) -> TabularDataset:
    """One freshly drawn synthetic dataset per retrain seed, stacked for the vectorised trainer."""
    return TabularDataset.stack(
        [
            load_study_dataset(
                spec.model_copy(
                    update={"dataset": spec.dataset.model_copy(update={"seed": dataset_seed_of(spec, s)})}
                )
            )
            for s in seeds
        ]
    )


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best complete trial; for a multi-objective study, the Pareto trial best on the first objective."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.values is not None and all(map(math.isfinite, t.values))
    ]
    if not complete:
        raise ConfigError(f"study {study.study_name} has no complete trial to retrain; run `hpo run` first")
    if len(study.directions) == 1:
        return study.best_trial
    front = study.best_trials
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(front, key=lambda t: sign * t.values[0])


def _complete_by_params(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """A study's complete, finite trials keyed by their parameters (one per configuration: a grid runs each once)."""
    out: dict[str, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.values is not None and all(map(math.isfinite, t.values)):
            out.setdefault(repr(sorted(t.params.items())), t)
    return out


def pooled_trial(
    spec: StudySpec, arch: str, storage: optuna.storages.BaseStorage
) -> optuna.trial.FrozenTrial:
    """``sweep: {choose: pooled}``: this sub-study's trial of the configuration whose validation objective,
    averaged over every value of the sweep, is best (only configurations that completed at every value count)."""
    point = spec.sweep_point or {}
    names = [f"{point['of']}.{point['key']}{sweep_value(point['key'], v):g}" for v in point["values"]]
    studies = [optuna.load_study(study_name=f"{n}/{arch}", storage=storage) for n in names]
    runs = [_complete_by_params(s) for s in studies]
    common = set.intersection(*(set(r) for r in runs))
    if not common:
        raise ConfigError(
            f"{spec.source}: sweep.choose pooled: no configuration of {arch} completed at every value of "
            f"{point['key']}; run `hpo run` until each has"
        )
    sign = -1.0 if studies[0].direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    best = min(sorted(common), key=lambda k: sign * float(np.mean([r[k].values[0] for r in runs])))
    return _complete_by_params(optuna.load_study(study_name=spec.study_name(arch), storage=storage))[best]


@dataclass(frozen=True)
class Chosen:
    """What a retrain study retrains: a tuning trial's configuration, or the default one (trial number -1)."""

    number: int
    values: list[float] | None
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    parameter_count: int

    @classmethod
    def of_trial(cls, trial: optuna.trial.FrozenTrial) -> Chosen:
        attrs = keys.plain(trial.user_attrs)
        return cls(
            trial.number,
            trial.values,
            attrs[keys.MODEL_CONFIG],
            attrs[keys.TRAIN_CONFIG],
            attrs[keys.PARAMETER_COUNT],
        )


def default_choice(spec: StudySpec, arch: str, ds: TabularDataset, device: torch.device) -> Chosen:
    """The architecture's documented default: its constructor's defaults (``hpo models``) and the study's
    ``training`` block with the trainer's defaults (no optimiser setting sampled), under the study's budget."""
    hyper = {p.name: p.default for p in get_entry(arch).params}
    shaped = {k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()}
    try:
        probe = probe_model(arch, ds.spec, ds.tasks, budget=spec.budget, **shaped)
    except ConfigError as exc:
        raise ConfigError(f"{spec.source}: retrain.default: {arch}'s default configuration: {exc}") from None
    cfg = training_config(spec, objective_targets(spec, ds), str(device))
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in hyper.items()}
    return Chosen(-1, None, plain, cfg.model_dump(), probe.parameter_count())


def prepare_retrain(
    spec: StudySpec,
    storage: optuna.storages.BaseStorage,
    ds: TabularDataset,
    n_seeds: int,
    device: torch.device,
    url: str | None = None,
    archs: Collection[str] | None = None,
) -> dict[str, optuna.Study]:
    """Create the retrain studies and queue the chunks of seeds ``0 .. n_seeds - 1`` (under the study's lock on
    ``url``, the storage's URL unless given), of every architecture or of ``archs``. A new retrain study is told
    what it retrains once: the default configuration, the configuration ``retrain.select``'s probe chose
    (:mod:`hpo.search.select`; its probe must have finished), the sweep's pooled choice, or the best tuning trial."""
    url = url or normalise_url(getattr(storage, "url", None))
    out = {}
    existing = {s.study_name for s in storage.get_all_studies()}
    for arch in (a.name for a in spec.architectures if archs is None or a.name in archs):
        if spec.is_default:
            main_dir = optuna.study.StudyDirection[objective_directions(spec, ds)[0].upper()]
        else:
            if spec.study_name(arch) not in existing:
                raise ConfigError(
                    f"no tuning study {spec.study_name(arch)!r} in the storage; run `hpo run {spec.source}` first"
                )
            main_dir = optuna.load_study(study_name=spec.study_name(arch), storage=storage).directions[0]
        study = optuna.create_study(
            storage=storage,
            study_name=retrain_study_name(spec, arch),
            direction=main_dir,
            load_if_exists=True,
        )
        if keys.TUNING_TRIAL not in keys.plain(study.user_attrs):
            chosen, record = _choose(spec, arch, storage, ds, device)
            _describe_retrain(study, spec, arch, chosen, ds, device, n_seeds, record)
        attrs = keys.plain(study.user_attrs)
        cross = attrs.get(keys.CROSS)
        block = cross["init"] * cross["data"] if cross and cross.get("splits", 1) > 1 else None
        chunks = chunk_seeds(n_seeds, int(attrs[keys.CHUNK_SIZE]), block)
        with claim_lock(url, study.study_name):  # overlapping `hpo retrain` processes queue each chunk once
            # a killed process's chunk still reads RUNNING: fail it, then queue it
            fail_dead_workers(url, study)
            ensure_tickets(study, len(chunks), attrs=[{keys.SEEDS: seeds} for seeds in chunks])
        out[arch] = study
    return out


def _choose(
    spec: StudySpec,
    arch: str,
    storage: optuna.storages.BaseStorage,
    ds: TabularDataset,
    device: torch.device,
) -> tuple[Chosen, dict[str, Any] | None]:
    """What ``arch``'s retraining trains, and the probe's record where ``retrain.select`` chose it."""
    if spec.is_default:
        return default_choice(spec, arch, ds, device), None
    tuning = optuna.load_study(study_name=spec.study_name(arch), storage=storage)
    if spec.retrain.select is not None:
        number, record = selection(spec, arch, storage)
        return Chosen.of_trial(tuning.get_trials(deepcopy=False)[number]), record
    if (spec.sweep_point or {}).get("choose") == "pooled":
        return Chosen.of_trial(pooled_trial(spec, arch, storage)), None
    return Chosen.of_trial(best_trial(tuning)), None


def described(spec: StudySpec, storage: optuna.storages.BaseStorage) -> set[str]:
    """The architectures whose retrain study already holds what it retrains (a resumed retraining keeps it)."""
    names = {s.study_name for s in storage.get_all_studies()}
    return {
        a.name
        for a in spec.architectures
        if retrain_study_name(spec, a.name) in names
        and keys.TUNING_TRIAL
        in keys.plain(
            optuna.load_study(study_name=retrain_study_name(spec, a.name), storage=storage).user_attrs
        )
    }


def _describe_retrain(
    study: optuna.Study,
    spec: StudySpec,
    arch: str,
    chosen: Chosen,
    ds: TabularDataset,
    device: torch.device,
    n_seeds: int,
    record: dict[str, Any] | None = None,
) -> None:
    """Store on a new retrain study what it retrains (the chosen configuration, or the default one; ``record``:
    how ``retrain.select`` chose it), its seed design and its chunk size, chosen once from the device's free
    memory unless the spec fixes it, so every worker cuts the same chunks and maps seeds to the same
    (initialisation, data-order) cells."""
    hyper = chosen.model_config
    cfg = TrainConfig(**{**chosen.train_config, "device": str(device)})
    shaped = {k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()}
    probe = probe_model(arch, ds.spec, ds.tasks, budget=spec.budget, **shaped)
    units = [u.units for u in probe.layer_units()]
    per = bytes_per_replica(chosen.parameter_count, units, cfg.batch_size)
    acts = activation_bytes_per_replica(units, cfg.batch_size)
    chunk = spec.retrain.replicas_per_run or replicas_that_fit(
        per, device, wanted=n_seeds, activation_bytes=acts
    )
    attrs = {
        keys.TUNING_TRIAL: chosen.number,
        keys.TUNING_VALUES: chosen.values,
        keys.MODEL_CONFIG: hyper,
        keys.TRAIN_CONFIG: chosen.train_config,
        keys.ARCHITECTURE: arch,
        keys.SPEC_NAME: spec.name,
        keys.CHUNK_SIZE: chunk,
        keys.FRESH_DATA: spec.retrain.fresh_data,
        keys.CROSS: spec.retrain.cross.model_dump() if spec.retrain.cross else None,
        keys.DEFAULT: spec.is_default,
        keys.REPLICATE: spec.replicate_point,
        keys.SELECTION: record,
    }
    for key, value in attrs.items():
        study.set_user_attr(keys.key(key), value)
    task, metric = objective_targets(spec, ds)[0]
    study.set_metric_names([f"test {task} {metric.upper()} (mean over the chunk's seeds)"])


def chunk_seeds(n_seeds: int, chunk: int, block: int | None = None) -> list[list[int]]:
    """Seeds ``0 .. n_seeds - 1`` cut into chunks of at most ``chunk``; with ``block``, no chunk spans two
    blocks (a crossed retrain's held-out split is one dataset per chunk)."""
    step = block or n_seeds
    return [
        list(range(c, min(start + step, n_seeds, c + chunk)))
        for start in range(0, n_seeds, step)
        for c in range(start, min(start + step, n_seeds), chunk)
    ]


class RetrainObjective:
    def __init__(
        self,
        spec: StudySpec,
        arch: str,
        ds: TabularDataset,
        url: str,
        device: str,
        *,
        worker: int = 0,
        on_epoch: Callable[[optuna.Trial, EpochReport], None] | None = None,
    ) -> None:
        self.spec, self.arch, self.ds, self.url, self.device = spec, arch, ds, url, device
        self.task, self.metric = objective_targets(spec, ds)[0]
        self.worker, self.on_epoch = worker, on_epoch

    def _provenance(self, cfg: TrainConfig) -> dict[str, Any]:
        """A sweep's chunks may run across sessions and revisions: each says which it ran on, and which
        architecture it trains (for the live view and the dashboard)."""
        provenance = {
            keys.ARCHITECTURE: self.arch,
            keys.THREADS: threads.for_trial(cfg.threads),
            keys.CODE_REVISION: code_revision(),
            keys.VERSIONS: package_versions(),
            keys.KERNEL: kernel_provenance(self.device),
        }
        return {keys.key(name): value for name, value in provenance.items()}

    def _progress(self, trial: optuna.Trial, seeds: list[int], epochs: int) -> Callable[[EpochReport], None]:
        """What a chunk shows while it trains (one of a 2048-unit configuration takes half an hour on a CPU core):
        a log line once a minute, the live view's epoch, and the trial's live attribute (epoch, seeds still
        training, their mean validation metric) that ``hpo status`` and the dashboard read, written at most every
        ``LIVE_SECONDS``. Interrupts are honoured between epochs."""
        log_line = epoch_log(f"{self.arch} retrain chunk {trial.number} (seeds {seeds})", epochs)
        live = live_writer(trial, self.worker)

        def callback(rep: EpochReport) -> None:
            interrupts.check()
            log_line(rep)
            if self.on_epoch is not None:
                self.on_epoch(trial, rep)
            live(rep)

        return callback

    def _data(
        self, trial: optuna.Trial, study_attrs: dict[str, Any], seeds: list[int]
    ) -> tuple[TabularDataset, list[int], list[int], dict[str, Any]]:
        """The chunk's data (a crossed design's held-out split redrawn, fresh data where the spec asks for it),
        each seed's initialisation and data-order seeds, and what of the data a checkpoint must match."""
        drawn: dict[str, Any] = {"dataset": self.ds.name}  # what of the data a checkpoint must match
        ds = self.ds
        if cross := study_attrs.get(keys.CROSS):
            cells = [cross_cell(s, cross) for s in seeds]
            (split,) = {c[0] for c in cells}  # chunks never span two held-out splits (chunk_seeds)
            init, data = [c[1] for c in cells], [c[2] for c in cells]
            ds = ds.redraw_heldout(split)
            trial.set_user_attr(keys.key(keys.HELDOUT_SPLIT), split)
            drawn["split"] = split
        else:
            init, data = [seeds_of(s)[0] for s in seeds], [seeds_of(s)[1] for s in seeds]
        if self.spec.retrain.fresh_data:
            ds = fresh_datasets(self.spec, seeds).to(self.ds.device)
            drawn["dataset_seeds"] = [dataset_seed_of(self.spec, s) for s in seeds]
            trial.set_user_attr(keys.key(keys.DATASET_SEEDS), drawn["dataset_seeds"])
        return ds, init, data, drawn

    def __call__(self, trial: optuna.Trial) -> float:
        study_attrs = keys.plain(trial.study.user_attrs)
        seeds: list[int] = list(keys.plain(trial.user_attrs)[keys.SEEDS])
        hyper: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in study_attrs[keys.MODEL_CONFIG].items()
        }
        cfg = TrainConfig(**{**study_attrs[keys.TRAIN_CONFIG], "device": self.device})
        ds, init, data, drawn = self._data(trial, study_attrs, seeds)
        model = create_model(
            self.arch, ds.spec, ds.tasks, replicas=len(seeds), seeds=init, budget=self.spec.budget, **hyper
        )
        set_trial_attrs(trial, self._provenance(cfg))  # one write
        ticket = keys.plain(trial.user_attrs).get(keys.TICKET, trial.number)
        ckpt = chunk_checkpoint(
            self.url, trial.study.study_name, f"ticket-{ticket}",
            arch=self.arch, hyper=hyper, train=cfg.model_dump(), init=init, data=data, **drawn,
        )  # fmt: skip
        results = train(
            model,
            ds,
            cfg,
            init_seeds=init,
            data_seeds=data,
            callback=self._progress(trial, seeds, cfg.epochs),
            checkpoint=ckpt,  # a chunk stopped mid-way (a killed worker) resumes at its last epoch written
        )
        if ckpt is not None and ckpt.resumed_epoch:
            trial.set_user_attr(keys.key(keys.RESUMED_AFTER), ckpt.resumed_epoch)
        return self._finish(trial, model, ds, seeds, results, int(study_attrs[keys.TUNING_TRIAL]), ckpt)

    def _finish(
        self,
        trial: optuna.Trial,
        model: MTLModel,
        ds: TabularDataset,
        seeds: list[int],
        results: list[TrainResult],
        tuning_trial: int,
        ckpt: Checkpoint | None,
    ) -> float:
        """Store the chunk's seeds (results, metrics, curves, gate use), then remove its checkpoint (a stop in
        between loses nothing); its value is their mean test metric."""
        test = ds.splits["test"]
        n = min(len(test), 4096)
        rows = torch.arange(n, device=test.y.device).unsqueeze(0)
        use = gate_utilisation(model, test.features(rows.expand(len(seeds), -1) if test.replicated else rows))
        trial.set_user_attr(keys.key(keys.GATE_UTILISATION), [u.__dict__ for u in use])
        trial.set_user_attr(keys.key(keys.REPLICAS), len(seeds))
        trial.set_user_attr(keys.key(keys.WALL_TIME), results[0].wall_time)
        by_seed = list(zip(seeds, results, strict=True))
        results_rows, metric_rows = seed_rows(self.spec.name, self.arch, tuning_trial, by_seed, len(seeds))
        curves = curve_rows(self.spec.name, self.arch, by_seed)
        store_seed_results(self.url, trial, results_rows, metric_rows, curves)
        if ckpt is not None:
            ckpt.clear()
        values = [r.metric("test", self.task, self.metric) for r in results if r.status == "ok"]
        if not values:
            trial.set_user_attr(keys.key(keys.PRUNED_REASON), "every seed of the chunk diverged")
            raise optuna.TrialPruned("every seed diverged")
        return float(np.mean(values))


def retrain_specs(spec: StudySpec) -> list[StudySpec]:
    """Every study a spec's retraining covers: its (replicate or sweep) studies, then the default configurations'
    when ``retrain.default`` is set."""
    return [*spec.expand(), *([spec.default_spec()] if spec.retrain.default else [])]


def _seed_count(spec: StudySpec, seeds: int | None) -> int:
    """``--seeds`` or the spec's; a crossed design fixes the count (its cells), so another is refused."""
    n_seeds = seeds or spec.retrain.seeds
    if spec.retrain.cross is not None and n_seeds != spec.retrain.seeds:
        raise ConfigError(
            f"--seeds {n_seeds} does not fit the crossed design of {spec.source} (retrain.cross: "
            f"{spec.retrain.cross.init} x {spec.retrain.cross.data} x {spec.retrain.cross.splits} = "
            f"{spec.retrain.seeds} seeds); change cross instead"
        )
    return n_seeds


ObjectiveOf = Callable[
    [str, int, Callable[[optuna.Trial, EpochReport], None] | None], Callable[[optuna.Trial], Any]
]


def _with_children(
    spec: StudySpec,
    url: str,
    storage: optuna.storages.BaseStorage,
    studies: dict[str, optuna.Study],
    objective_of: ObjectiveOf,
    device: Any,
    devices: Sequence[str],
    workers: int,
    stored: bool,
) -> list[Any]:
    """Workers 1.. as ``hpo retrain --join`` children, worker 0 in this process (its data and checks are paid
    already); with ``stored`` (``hpo retrain NAME --stored``) the children read the stored spec too, since this
    machine need not hold its YAML."""

    def args(i: int) -> list[str]:
        return [
            "retrain",
            *([spec.name, "--stored"] if stored else [spec.source]),
            "--join",
            "--worker-index",
            str(i),
            "--devices",
            ",".join(devices),
            "--quiet",
        ]

    def own() -> None:
        threads.install_for(device)  # re-planned: this process is now one of the workers
        drain(url, storage, {a: (st, objective_of(a, 0, None)) for a, st in studies.items()})

    return with_children(args, url, workers, own)


def run_retrain(
    spec: StudySpec,
    storage_url: str | None = None,
    *,
    seeds: int | None = None,
    workers: int = 1,
    devices: Sequence[str] = ("auto",),
    worker_index: int = 0,
    join_only: bool = False,
    quiet: bool = True,
    check_tuning: bool = True,
    stored: bool = False,
) -> dict[str, Any]:
    """Queue (unless ``join_only``) and run the retraining of every architecture's best configuration: first,
    with ``retrain.select``, the probe that chooses it (:mod:`hpo.search.select`), then the seeds.

    Several workers are child processes (:mod:`hpo.search.launch`) that take the storage from their environment;
    a joining worker takes whatever probe tickets are open, then the seed chunks queued so far. Probe tickets and
    chunks are tickets like tuning trials: queued once under the study's lock, claimed once, each seed's result
    stored once. An unfinished tuning is refused (:func:`require_finished_tuning`) unless ``check_tuning`` is off.
    ``stored``: the spec was read from the studies (``--stored``), and the children read it so too."""
    url = normalise_url(storage_url)
    n_seeds = _seed_count(spec, seeds)
    storage = open_storage(url, create=False)  # retraining needs the tuning studies: never a new database
    require_finished_tuning([spec] if check_tuning and not join_only else [], storage)
    device = resolve_device(devices[worker_index % len(devices)])
    threads.install_for(device)  # this worker's share of the machine's cores
    kernels = kernel_provenance(device)  # a sweep retrains each value in turn: the line names which
    log.info("retrain worker %d joined %s on %s, kernels: %s", worker_index, spec.name, device, kernels)
    ds = load_study_dataset(spec).to(device)  # once per worker: every chunk trains on device-resident data

    def run(studies: dict[str, optuna.Study], objective_of: ObjectiveOf, title: str) -> None:
        if workers > 1:
            exits = with_signals(
                lambda: _with_children(
                    spec, url, storage, studies, objective_of, device, devices, workers, stored
                )
            )
            check_workers_done(studies, exits)  # a killed child whose tickets others finished left no work
        else:
            _drain_here(spec, url, storage, studies, objective_of, worker_index, quiet, title)

    def probe_of(arch: str, worker: int, on_epoch: Any) -> SelectObjective:
        return SelectObjective(spec, arch, ds, storage, str(device), worker=worker, url=url)

    def chunks_of(arch: str, worker: int, on_epoch: Any) -> RetrainObjective:
        return RetrainObjective(spec, arch, ds, url, str(device), worker=worker, on_epoch=on_epoch)

    if join_only:
        queued = _queued(spec, storage)
        for kind, objective_of, title in ((SELECT, probe_of, "probe"), (RETRAIN, chunks_of, "chunks")):
            if queued[kind]:
                _drain_here(spec, url, storage, queued[kind], objective_of, worker_index, quiet, title)
        return queued[RETRAIN] or queued[SELECT]  # a worker that joined the probe alone did work too
    if probes := prepare_select(spec, storage, ds, url, described(spec, storage)):
        run(probes, probe_of, f"choosing {spec.name}'s configurations to retrain: probe seeds")
    studies = prepare_retrain(spec, storage, ds, n_seeds, device, url)
    run(studies, chunks_of, f"retraining {spec.name}: seed chunks")
    return studies


def run_retrain_specs(
    specs: Sequence[StudySpec],
    storage_url: str | None,
    *,
    seeds: int | None = None,
    workers: int = 1,
    devices: Sequence[str] = ("auto",),
    worker_index: int = 0,
    join_only: bool = False,
    stored: bool = False,
) -> list[Any]:
    """`hpo retrain`: every spec's retraining (tuning replicates, a sweep's values, the defaults). Every worker
    takes them as one queue first (:func:`retrain_every_spec_at_once`; several as children, a joining one only
    what is queued); then :func:`run_retrain` per spec finishes what is left (children for a single spec's
    several workers). Tuning is checked by the caller."""
    probed = any(spec.retrain.select is not None for spec in specs)  # one spec without a probe is one queue
    if len(specs) > 1 or probed:
        if workers == 1 or join_only:
            device = devices[worker_index % len(devices)]
            retrain_every_spec_at_once(
                specs, storage_url, seeds=seeds, device=device, worker_index=worker_index, join_only=join_only
            )
        else:
            _every_spec_with_children(specs, storage_url, seeds, devices, workers, stored)
        workers = 1  # what is left (nothing, unless a worker was stopped) this process finishes alone
    return [
        run_retrain(
            spec,
            storage_url,
            seeds=seeds,
            workers=workers,
            devices=devices,
            worker_index=worker_index,
            join_only=join_only,
            check_tuning=False,
            stored=stored,
        )
        for spec in specs
    ]


def _every_spec_with_children(
    specs: Sequence[StudySpec],
    storage_url: str | None,
    seeds: int | None,
    devices: Sequence[str],
    workers: int,
    stored: bool,
) -> None:
    """``hpo retrain --workers N`` over several specs (or one spec's probes): every worker (children 1.., worker 0
    here) takes the one queue of :func:`retrain_every_spec_at_once`, so none idles at a replicate's or a probe's
    last ticket while other work is ready (per spec, each probe and then the seeds were a barrier for all N).
    A child is a one-worker ``hpo retrain`` of the same YAML: queueing is once under each study's lock, so
    several processes that queue are safe, and the tuning was checked here (``--unfinished`` skips it there)."""
    url = normalise_url(storage_url)
    storage = open_storage(url, create=False)

    def args(i: int) -> list[str]:
        count = ["--seeds", str(seeds)] if seeds else []
        devs = ["--devices", ",".join(devices), "--worker-index", str(i)]
        study = [specs[0].name, "--stored"] if stored else [specs[0].source]  # see _with_children
        return ["retrain", *study, *devs, *count, "--unfinished", "--quiet"]

    exits = with_signals(
        lambda: with_children(
            args, url, workers, lambda: retrain_every_spec_at_once(specs, url, seeds=seeds, device=devices[0])
        )
    )
    studies = {
        study.study_name: study
        for spec in specs
        for kind in _queued(spec, storage).values()
        for study in kind.values()
    }
    check_workers_done(studies, exits)  # a stopped child whose tickets others finished left no work


def retrain_every_spec_at_once(
    specs: Sequence[StudySpec],
    storage_url: str | None,
    *,
    seeds: int | None = None,
    device: str = "auto",
    worker_index: int = 0,
    quiet: bool = True,
    join_only: bool = False,
) -> None:
    """One worker's pass over the probes and seed chunks of every spec (tuning replicates, a sweep's values), as
    one queue: an architecture's seed chunks join it as soon as its probe has finished (or at once, with no probe
    to wait for), so a worker never waits on another process's last ticket while other work is ready (measured on
    the census: one of two workers sat 9.5 minutes at the end of one replicate's probe, and 8.4 minutes at the end
    of the last probe while replicate 1's seeds waited). :func:`run_retrain` per spec afterwards finds the work
    done (or finishes what a stop left). ``join_only`` (``hpo retrain --join``): queue nothing, take what another
    process has queued (a retraining it queues while this pass runs joins it too)."""
    url = normalise_url(storage_url)
    storage = open_storage(url, create=False)
    dev = resolve_device(device)
    threads.install_for(dev)
    queue = _OneQueue(specs, url, storage, dev, seeds, worker_index, join_only)
    title = "probe seeds and seed chunks of every replicate"
    _drain_all(specs[0], url, storage, queue.probes(), queue.ready, quiet, title)


class _OneQueue:
    """The probes and retrainings of several specs that one worker takes as one queue
    (:func:`retrain_every_spec_at_once`): which to take now, queued by this worker unless it only joins."""

    def __init__(
        self,
        specs: Sequence[StudySpec],
        url: str,
        storage: optuna.storages.BaseStorage,
        dev: torch.device,
        seeds: int | None,
        worker: int,
        join_only: bool,
    ) -> None:
        self.specs, self.url, self.storage, self.dev = specs, url, storage, dev
        self.seeds, self.worker, self.join_only = seeds, worker, join_only
        self.data: dict[str, TabularDataset] = {}
        self.probed: dict[tuple[str, str], optuna.Study] = {}
        self.queued: set[tuple[str, str]] = set()

    def ds_of(self, spec: StudySpec) -> TabularDataset:
        """The spec's dataset on the device: the replicates share one, prepared once."""
        key = f"{spec.dataset!r} {spec.base_dir}"
        if key not in self.data:
            self.data[key] = load_study_dataset(spec).to(self.dev)
        return self.data[key]

    def probes(self) -> dict[str, Queue]:
        """Every spec's probe tickets (queued here unless joining), the round's first queues."""
        out: dict[str, Queue] = {}
        for spec in self.specs:
            if self.join_only:
                studies = _queued(spec, self.storage)[SELECT]
            else:
                studies = prepare_select(
                    spec, self.storage, self.ds_of(spec), self.url, described(spec, self.storage)
                )
            for arch, study in studies.items():
                self.probed[spec.name, arch] = study
                objective = SelectObjective(
                    spec,
                    arch,
                    self.ds_of(spec),
                    self.storage,
                    str(self.dev),
                    worker=self.worker,
                    url=self.url,
                )
                out[study.study_name] = (study, objective)
        return out

    def ready(self) -> dict[str, Queue]:
        """The retrainings whose probe has finished since the last call (any worker's), queued (or, joining,
        those another process has queued since)."""
        new: dict[str, Queue] = {}
        for spec in self.specs:
            waiting = [
                (spec.name, a.name) for a in spec.architectures if (spec.name, a.name) not in self.queued
            ]
            archs = [k[1] for k in waiting if k not in self.probed or probe_finished(self.probed[k])]
            if not archs:
                continue
            if self.join_only:
                made = {a: st for a, st in _queued(spec, self.storage)[RETRAIN].items() if a in archs}
            else:
                made = prepare_retrain(
                    spec,
                    self.storage,
                    self.ds_of(spec),
                    _seed_count(spec, self.seeds),
                    self.dev,
                    self.url,
                    archs,
                )
            self.queued.update((spec.name, arch) for arch in made)
            for a, study in made.items():
                objective = RetrainObjective(
                    spec, a, self.ds_of(spec), self.url, str(self.dev), worker=self.worker
                )
                new[study.study_name] = (study, objective)
        return new


def _drain_all(
    spec: StudySpec,
    url: str,
    storage: optuna.storages.BaseStorage,
    queues: dict[str, Queue],
    ready: Callable[[], dict[str, Queue]],
    quiet: bool,
    title: str,
) -> None:
    """Tickets of several specs' studies (keyed by study name), with the live view on a terminal; ``ready``
    returns the queues that have become ready since its last call (they join the round)."""
    from hpo.search.progress import StudyProgress

    with StudyProgress(
        spec, {k: q[0] for k, q in queues.items()}, None, quiet=quiet, title=title
    ) as progress:

        def refresh() -> dict[str, Queue]:
            new = ready()
            for name, (study, _) in new.items():
                progress.add(name, study)
            return new

        with_signals(lambda: drain(url, storage, queues, progress=progress, refresh=refresh))


def require_finished_tuning(
    specs: Sequence[StudySpec], storage: optuna.storages.BaseStorage | str | None
) -> None:
    """Refuse, in one line, to retrain a tuning that has not finished (:func:`hpo.search.studies.tuning_left`):
    the retraining would freeze its best configurations so far. Every spec is checked before any trains (not
    hours into the first replicate); a default spec has no tuning. ``storage``: a storage or its URL."""
    if not isinstance(storage, optuna.storages.BaseStorage):
        storage = open_storage(normalise_url(storage), create=False)
    for spec in specs:
        if not spec.is_default and (left := tuning_left(spec, storage)):
            raise ConfigError(
                f"{spec.source}: the tuning of {spec.name} has not finished: {'; '.join(left)}; finish it with "
                f"`hpo run {spec.source}` (it re-queues a stopped process's trials), or retrain the best "
                "configurations so far with --unfinished"
            )


SELECT, RETRAIN = "select", "retrain"


def _queued(spec: StudySpec, storage: optuna.storages.BaseStorage) -> dict[str, dict[str, optuna.Study]]:
    """The probe and retrain studies of ``spec`` that exist so far (a sweep's later sub-studies may not)."""
    names = {s.study_name for s in storage.get_all_studies()}
    out: dict[str, dict[str, optuna.Study]] = {SELECT: {}, RETRAIN: {}}
    for arch in (a.name for a in spec.architectures):
        for kind, name in (
            (SELECT, select_study_name(spec.name, arch)),
            (RETRAIN, retrain_study_name(spec, arch)),
        ):
            if name in names:
                out[kind][arch] = optuna.load_study(study_name=name, storage=storage)
    return out


def _drain_here(
    spec: StudySpec,
    url: str,
    storage: optuna.storages.BaseStorage,
    studies: dict[str, optuna.Study],
    objective_of: ObjectiveOf,
    worker: int,
    quiet: bool,
    title: str,
) -> None:
    """This process's tickets, with the live view (counts, and each ticket's epoch) on a terminal."""
    from hpo.search.progress import StudyProgress

    with StudyProgress(spec, studies, None, quiet=quiet, title=title) as progress:
        queues = {a: (study, objective_of(a, worker, progress.on_epoch)) for a, study in studies.items()}
        with_signals(lambda: drain(url, storage, queues, progress=progress))
