"""The studies of a spec: its dataset, its inputs checked before any storage is touched, one Optuna study per
architecture created (or joined, refused when its definition changed), and the spec stored on them that workers
started elsewhere read back."""

from __future__ import annotations

import logging
import time
from typing import Any

import optuna

from hpo.config.space import SearchSpace
from hpo.config.study import StudySpec, changed_fields
from hpo.data._tabular import TabularDataset
from hpo.data.sources import load_source
from hpo.errors import ConfigError
from hpo.search.factories import make_pruner, make_sampler
from hpo.search.objective import objective_chance, objective_directions, objective_names
from hpo.search.tickets import tickets_of
from hpo.search.widen import WideningSampler, expandable
from hpo.storage import keys
from hpo.storage.engine import mask_url, normalise_url, open_storage

log = logging.getLogger(__name__)

__all__ = [
    "check_inputs",
    "create_studies",
    "load_study_dataset",
    "require_studies",
    "stored_spec",
    "tuning_left",
]


def load_study_dataset(spec: StudySpec) -> TabularDataset:
    """The dataset a study's dataset section names (paths relative to the study file)."""
    return load_source(spec.dataset, spec.base_dir)


def create_studies(
    spec: StudySpec,
    storage: optuna.storages.BaseStorage,
    ds: TabularDataset,
    *,
    worker_id: int | None = None,
    allow_changed: bool = False,
) -> dict[str, optuna.Study]:
    """Create (or load) one study per architecture, with the resolved spec stored on it; ``worker_id`` seeds
    the sampler (see :func:`hpo.search.factories.make_sampler`). An existing study whose definition differs from
    ``spec``'s is refused (:func:`_same_definition`) unless ``allow_changed``."""
    directions = objective_directions(spec, ds)
    names = objective_names(spec, ds)
    resolved = spec.resolved()
    chance = objective_chance(spec, ds)
    studies = {}
    for arch in (a.name for a in spec.architectures):
        study = optuna.create_study(
            storage=storage,
            study_name=spec.study_name(arch),
            directions=[optuna.study.StudyDirection[d.upper()] for d in directions],
            load_if_exists=True,
            sampler=_sampler(spec, arch, worker_id, directions, chance),
            pruner=make_pruner(spec.pruner),
        )
        if [d.name.lower() for d in study.directions] != directions:
            raise ConfigError(
                f"study {study.study_name} exists with directions "
                f"{[d.name.lower() for d in study.directions]}, the spec asks for {directions}"
            )
        attrs = keys.plain(study.user_attrs)
        if keys.SPEC not in attrs:
            study.set_user_attr(keys.key(keys.SPEC), resolved)
            study.set_user_attr(keys.key(keys.ARCHITECTURE), arch)
            study.set_user_attr(keys.key(keys.SPEC_NAME), spec.name)
            study.set_user_attr(
                keys.key(keys.DATASET), {k: v for k, v in ds.info().items() if k != "provenance"}
            )
            study.set_user_attr(keys.key(keys.PROVENANCE), ds.provenance)
            study.set_metric_names(names)
        elif (before := attrs[keys.SPEC].get("plugin_origins") or {}) != resolved["plugin_origins"]:
            raise ConfigError(
                f"study {study.study_name} was tuned with plugin code {before}, this run loads "
                f"{resolved['plugin_origins']}: continuing would compare two versions of one architecture; "
                "restore the plugin or give the study a new name"
            )
        else:
            _same_definition(spec, arch, study, attrs, allow_changed)
        studies[arch] = study
    return studies


def _check_expand_names(spec: StudySpec, spaces: list[SearchSpace]) -> None:
    """``trials.expand`` may name only numeric parameters of the study's spaces."""
    names = spec.budget_rule.expand if spec.budget_rule is not None else []
    numeric = sorted({n for s in spaces for n, r in s.params.items() if r.type != "categorical"})
    unknown = [n for n in names if n not in numeric] if names != "all" else []
    if unknown:
        raise ConfigError(
            f"{spec.source}: trials.expand names {', '.join(unknown)}, not a numeric parameter of the study's "
            f"search spaces; allowed: {', '.join(numeric) or 'none'}, or all"
        )


def _sampler(
    spec: StudySpec, arch: str, worker_id: int | None, directions: list[str], chance: float | None
) -> optuna.samplers.BaseSampler:
    """The study's sampler; where a range may widen, wrapped so that it keeps modelling widened parameters."""
    sampler = make_sampler(
        spec.sampler,
        worker_id=worker_id,
        multi_objective=len(directions) > 1,
        chance=chance,
        higher_is_better=directions[0] == "maximize",
    )
    spaces = [spec.spaces()[arch], spec.optimizer_space_loaded()]
    return WideningSampler(sampler, spaces) if expandable(spaces) else sampler


def _same_definition(
    spec: StudySpec, arch: str, study: optuna.Study, attrs: dict[str, Any], allow_changed: bool
) -> None:
    """Refuse to resume a study whose experiment is no longer the one it was tuned as: its best trial would come
    from other data or settings. With ``allow_changed`` the new definition is stored and the change recorded on
    the study (``changes``), which every later trial repeats (``definition_changes``)."""
    stored = StudySpec.from_stored(attrs[keys.SPEC])
    fields = changed_fields(stored.definition(arch), spec.definition(arch))
    if not fields:
        return
    shown = ", ".join(fields[:6]) + (f" and {len(fields) - 6} more" if len(fields) > 6 else "")
    if not allow_changed:
        raise ConfigError(
            f"study {study.study_name} was tuned with another definition (changed: {shown}); resuming would mix "
            "two experiments: give the study a new name, or pass --allow-changed to continue it on purpose"
        )
    log.warning(
        "study %s continues with a changed definition (%s), as --allow-changed asks", study.study_name, shown
    )
    changes = [
        *attrs.get(keys.CHANGES, []),
        {"fields": fields, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    ]
    study.set_user_attr(keys.key(keys.CHANGES), changes)
    study.set_user_attr(keys.key(keys.SPEC), spec.resolved())


def require_studies(spec: StudySpec, storage: optuna.storages.BaseStorage, url: str) -> None:
    """A worker joins studies that `hpo run` created; on a database without them it would create empty studies
    and run nothing, so it is refused in one line instead."""
    have = {s.study_name for s in storage.get_all_studies()}
    missing = [spec.study_name(a.name) for a in spec.architectures if spec.study_name(a.name) not in have]
    if missing:
        raise ConfigError(
            f"no study {missing[0]}{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''} in "
            f"{mask_url(url)}: a worker joins a study that exists; queue it first with "
            f"`hpo run {spec.source} --workers 0 --storage {mask_url(url)}`"
        )


def tuning_left(spec: StudySpec, storage: optuna.storages.BaseStorage) -> list[str]:
    """``arch (1 trial running, 5 queued)`` for every tuning study of ``spec`` that has not finished: trials still
    queued or running (a killed process's trial reads running until `hpo run` re-queues it), or, under a
    convergence budget, no judgement that stopped it yet. A retrain study records the configuration it retrains
    once, so retraining an unfinished tuning would freeze its best so far into the comparison. A convergence
    budget cut by ``timeout_minutes`` has finished for now (its report marks it unsettled); a fixed budget cut
    by it still has queued trials."""
    names = {s.study_name for s in storage.get_all_studies()}
    out = []
    for arch in (a.name for a in spec.architectures):
        if spec.study_name(arch) not in names:
            continue  # no tuning study at all: the retraining names it
        study = optuna.load_study(study_name=spec.study_name(arch), storage=storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        reason = keys.plain(study.user_attrs).get(keys.STOP_REASON)
        running = states.count(optuna.trial.TrialState.RUNNING)
        waiting = 0 if reason == "timeout" else states.count(optuna.trial.TrialState.WAITING)
        parts = [f"{running} trial{'s' if running > 1 else ''} running"] if running else []
        parts += [f"{waiting} queued"] if waiting else []
        if not parts and spec.budget_rule is not None and reason is None:
            parts = ["not yet judged by the convergence rule"]
        if parts:
            out.append(f"{arch} ({', '.join(parts)})")
    return out


def stored_spec(storage_url: str | None, name: str) -> StudySpec:
    """The spec stored on the studies of spec ``name`` (search spaces included), as workers started by hpo run it:
    the YAML the coordinator read, not whatever the file holds by the time a worker starts."""
    storage = open_storage(storage_url, heartbeat=False, create=False)
    for frozen in storage.get_all_studies():
        attrs = keys.plain(frozen.user_attrs)
        if (
            attrs.get(keys.SPEC_NAME) == name
            and keys.SPEC in attrs
            and not frozen.study_name.endswith("/retrain")
        ):
            return StudySpec.from_stored(attrs[keys.SPEC])
    raise ConfigError(
        f"no study of spec {name!r} in {mask_url(normalise_url(storage_url))}; run `hpo run` first"
    )


def check_inputs(spec: StudySpec, n_trials: int | None) -> tuple[TabularDataset, dict[str, Any]]:
    """Everything that can be wrong with a study's inputs, checked before any storage is opened: the dataset,
    the search spaces (including the budget, on sampled configurations), the objective, the ticket counts."""
    from hpo.search.validate import check_space

    ds = load_study_dataset(spec)
    for warning in ds.provenance.get("warnings", []):
        log.warning("dataset %s: %s", ds.name, warning)
    spaces = spec.spaces()
    opt_space = spec.optimizer_space_loaded()
    objective_directions(spec, ds)
    _check_expand_names(spec, [*spaces.values(), opt_space])
    if spec.budget_rule is None and expandable([*spaces.values(), opt_space]):
        widening = sorted(
            n for s in [*spaces.values(), opt_space] for n, r in s.params.items() if r.expandable()
        )
        raise ConfigError(
            f"{spec.source}: trials: `expand` on {', '.join(widening)} widens a range only when the settled rule "
            "judges the tuning; give `trials: {min: N, max: M, until: settled}` or drop `expand`"
        )
    problems: list[str] = []
    for arch, space in spaces.items():
        problems += check_space(
            space, arch, len(ds.tasks), budget=spec.budget, samples=50, seed=spec.seed
        ).problems
    if problems:
        raise ConfigError("; ".join(problems))
    return ds, {a.name: tickets_of(spec, a.name, n_trials) for a in spec.architectures}
