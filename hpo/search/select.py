"""Choose the configuration to retrain by more than one seed (``retrain.select``).

A tuning trial trains its configuration once, from one initialisation and one data order, and the retraining
takes the best of them. Where a configuration trains from some starting weights and not from others, that one
trial is its luckiest draw: on the census, tuning handed the retraining a Shared-Bottom configuration (three
2048-unit layers, a tower of 2 units per task) that scored validation income AUC 0.9476 in tuning and collapsed
to 0.5 from 4 of the 6 initialisations it was retrained from. A single trial cannot see that; a handful of seeds
can.

So, per architecture (and tuning replicate), the ``candidates`` best configurations by tuning value are each
trained again on ``seeds`` fresh seeds and scored on the validation split (the test split stays unseen, so the
retraining's test scores carry no selection), and the one with the best mean is retrained; a seed that diverged
counts at the objective's chance level. The mean, not the median: the retraining estimates the configuration's
mean over seeds, and a median would not see a configuration that collapses from a third of its seeds.

The probe is a study ``SPEC/ARCH/select`` with one ticket per candidate, which any worker claims once, as tuning
trials and retrain chunks are; its candidates are fixed when it is queued (more tuning later does not change
them). A ticket records each seed's value as it finishes, and the retry of a killed one trains only the rest
(:func:`finished_probe_seeds`), the one in flight from its checkpoint. Every probe seed is apart from the tuning
trials' (``seed x 100003 + n``), the settled rule's probe (``PROBE_SEED + i``) and the retrain seeds. The choice
and every candidate's probe are stored on the retrain study (``selection``), which the report shows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import torch

from hpo.config.naming import select_study_name
from hpo.config.study import StudySpec
from hpo.data._tabular import TabularDataset
from hpo.errors import ConfigError
from hpo.search.objective import (
    PROBE_SEED,
    live_writer,
    objective_chance,
    objective_directions,
    objective_names,
    objective_targets,
    part_checkpoints,
    valid_on_seeds,
)
from hpo.search.tickets import ensure_tickets
from hpo.storage import keys
from hpo.storage.attrs import set_trial_attrs
from hpo.storage.heartbeat import fail_dead_workers
from hpo.storage.locks import claim_lock
from hpo.training import TrainConfig

log = logging.getLogger(__name__)

__all__ = [
    "SELECT_SEED",
    "SelectObjective",
    "candidates",
    "finished_probe_seeds",
    "prepare_select",
    "probe_finished",
    "probe_score",
    "selection",
]

SELECT_SEED = (
    PROBE_SEED + 500_000
)  # the first probe seed: apart from every tuning, settled-probe and retrain seed


def candidates(tuning: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    """The ``n`` best complete trials of ``tuning`` by their (first) value, one per configuration, best first;
    ties keep the earlier trial first."""
    sign = -1.0 if tuning.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    seen: set[str] = set()
    out = []
    finished = [
        t
        for t in tuning.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.values is not None and all(map(math.isfinite, t.values))
    ]
    for t in sorted(finished, key=lambda t: (sign * t.values[0], t.number)):
        config = repr(sorted(t.params.items()))
        if config not in seen:
            seen.add(config)
            out.append(t)
    return out[:n]


def probe_score(values: Sequence[float], chance: float | None, *, higher_is_better: bool) -> float:
    """A candidate's mean validation objective over its probe seeds, a diverged seed (NaN) counting at the
    chance level; without a chance level, a candidate with a diverged seed scores the worst possible value."""
    arr = np.asarray(values, dtype=float)
    if np.isnan(arr).any():
        if chance is None:
            return -math.inf if higher_is_better else math.inf
        arr = np.where(np.isnan(arr), chance, arr)
    return float(arr.mean())


def prepare_select(
    spec: StudySpec,
    storage: optuna.storages.BaseStorage,
    ds: TabularDataset,
    url: str,
    described: set[str],
) -> dict[str, optuna.Study]:
    """Create the probe study of every architecture whose retraining is not yet described (``described``: the
    retrain studies that already hold their choice) and queue one ticket per candidate, under the study's lock
    (overlapping ``hpo retrain`` processes queue each once). Architectures with fewer than two complete
    configurations have nothing to choose between and get no probe."""
    select = spec.retrain.select
    if select is None or spec.is_default:
        return {}
    out = {}
    for arch in (a.name for a in spec.architectures):
        if arch in described:
            continue
        tuning = optuna.load_study(study_name=spec.study_name(arch), storage=storage)
        study = optuna.create_study(
            storage=storage,
            study_name=select_study_name(spec.name, arch),
            direction=tuning.directions[0],
            load_if_exists=True,
        )
        with claim_lock(url, study.study_name):
            attrs = keys.plain(study.user_attrs)
            if keys.CANDIDATES not in attrs:
                numbers = [t.number for t in candidates(tuning, select.candidates)]
                study.set_user_attr(keys.key(keys.CANDIDATES), numbers)
                study.set_user_attr(keys.key(keys.ARCHITECTURE), arch)
                study.set_user_attr(keys.key(keys.SPEC_NAME), spec.name)
                study.set_user_attr(keys.key(keys.REPLICATE), spec.replicate_point)
                study.set_metric_names(
                    [f"{objective_names(spec, ds)[0]} (mean over {select.seeds} probe seeds)"]
                )
                attrs = keys.plain(study.user_attrs)
            fail_dead_workers(url, study)  # a killed worker's ticket still reads RUNNING
            if len(attrs[keys.CANDIDATES]) >= 2:
                numbers = attrs[keys.CANDIDATES]  # one ticket per candidate not probed or being probed
                ensure_tickets(study, len(numbers), attrs=[{keys.CANDIDATE: n} for n in numbers])
        out[arch] = study
    return out


class SelectObjective:
    """One probe ticket: the candidate's stored configuration (what the retraining would train) on the probe
    seeds; its value is :func:`probe_score`, each seed's value is kept on the trial."""

    def __init__(
        self,
        spec: StudySpec,
        arch: str,
        ds: TabularDataset,
        storage: optuna.storages.BaseStorage,
        device: str,
        worker: int = 0,
        url: str | None = None,
    ) -> None:
        self.spec, self.arch, self.ds, self.device = spec, arch, ds, device
        self.worker, self.url = worker, url  # url: where its seeds' checkpoints go
        self.tuning = optuna.load_study(study_name=spec.study_name(arch), storage=storage)
        self.targets = objective_targets(spec, ds)
        self.chance = objective_chance(spec, ds)
        self.higher_is_better = objective_directions(spec, ds)[0] == "maximize"

    def __call__(self, trial: optuna.Trial) -> float:
        assert self.spec.retrain.select is not None
        number = int(keys.plain(trial.user_attrs)[keys.CANDIDATE])
        attrs = keys.plain(self.tuning.get_trials(deepcopy=False)[number].user_attrs)
        hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in attrs[keys.MODEL_CONFIG].items()}
        cfg = TrainConfig(**{**attrs[keys.TRAIN_CONFIG], "device": self.device})
        seeds = [SELECT_SEED + i for i in range(self.spec.retrain.select.seeds)]
        done = finished_probe_seeds(trial.study, number, seeds)
        if done:
            log.info(
                "%s select trial %d: seeds %s reused from a killed ticket", self.arch, number, sorted(done)
            )
            set_trial_attrs(
                trial, {keys.key(keys.PROBE_DONE): _stored(done), keys.key(keys.PROBE_REUSED): sorted(done)}
            )

        counts: dict[int, int] = {}

        def record(part: dict[int, float]) -> None:
            done.update(part)
            # the count valid_on_seeds set for this part (threads.for_trial)
            counts.update(dict.fromkeys(part, torch.get_num_threads()))
            set_trial_attrs(
                trial,
                {keys.key(keys.PROBE_DONE): _stored(done), keys.key(keys.PROBE_THREADS): _stored(counts)},
            )

        if todo := [s for s in seeds if s not in done]:
            valid_on_seeds(
                self.spec,
                self.arch,
                self.ds,
                hyper,
                cfg,
                todo,
                self.targets,
                f"select trial {number}",
                on_epoch=live_writer(trial, self.worker),  # `hpo status`: its epoch, not "starting"
                on_part=record,
                checkpoint=part_checkpoints(
                    self.url, trial.study.study_name, f"candidate-{number}", hyper, cfg, self.ds
                ),
            )
        values = [done[s] for s in seeds]
        set_trial_attrs(
            trial,
            {
                keys.key(keys.PROBE_VALUES): values,
                keys.key(keys.SEEDS): seeds,
                keys.key(keys.ARCHITECTURE): self.arch,
            },
        )
        return probe_score(values, self.chance, higher_is_better=self.higher_is_better)


def _stored(by_seed: dict[int, Any]) -> dict[str, Any]:
    return {str(seed): value for seed, value in sorted(by_seed.items())}  # JSON's keys are strings


def finished_probe_seeds(study: optuna.Study, candidate: int, seeds: Sequence[int]) -> dict[int, float]:
    """The probe seeds of tuning trial ``candidate`` that earlier tickets finished before they died (a killed
    worker's ticket is failed and queued again), with their values. A wide configuration's three seeds train one
    at a time on a CPU for up to an hour, and a session that stops its workers would otherwise lose every
    finished seed of every ticket in flight; a seed's value depends only on the configuration and the seed, so
    the retry trains just the rest. The latest failed ticket that holds a seed gives its value."""
    out: dict[int, float] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        attrs = keys.plain(t.user_attrs)
        if attrs.get(keys.CANDIDATE) is not None and int(attrs[keys.CANDIDATE]) == candidate:
            out.update(
                {int(s): float(v) for s, v in (attrs.get(keys.PROBE_DONE) or {}).items() if int(s) in seeds}
            )
    return out


def probe_finished(study: optuna.Study) -> bool:
    """Whether a probe study (:func:`prepare_select`) has what :func:`selection` needs: a complete ticket for every
    candidate, or fewer than two candidates (nothing to probe; :func:`selection` names a tuning with none)."""
    numbers = keys.plain(study.user_attrs).get(keys.CANDIDATES) or []
    if len(numbers) < 2:
        return True
    done = {
        keys.plain(t.user_attrs).get(keys.CANDIDATE)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    }
    return set(numbers) <= done


def selection(spec: StudySpec, arch: str, storage: optuna.storages.BaseStorage) -> tuple[int, dict[str, Any]]:
    """The tuning trial to retrain, chosen by the probe, and the record the retrain study keeps: the rule, the
    probe seeds and every candidate (its tuning value, each probe seed's value, its score, whether chosen)."""
    assert spec.retrain.select is not None
    study = optuna.load_study(study_name=select_study_name(spec.name, arch), storage=storage)
    numbers: list[int] = list(keys.plain(study.user_attrs).get(keys.CANDIDATES) or [])
    if not numbers:
        raise ConfigError(
            f"{spec.source}: retrain.select: {spec.study_name(arch)} has no complete trial to choose from; "
            f"run `hpo run {spec.source}` first"
        )
    tuning = optuna.load_study(study_name=spec.study_name(arch), storage=storage)
    by_number = {t.number: t for t in tuning.get_trials(deepcopy=False)}
    probes = {
        int(keys.plain(t.user_attrs)[keys.CANDIDATE]): t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    }
    if len(numbers) >= 2 and (missing := [n for n in numbers if n not in probes]):
        raise ConfigError(
            f"retrain.select: the probe of {arch}'s tuning trials {missing} has not finished; "
            f"run `hpo retrain {spec.source}` again"
        )
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    rows = [
        {
            "trial": n,
            "tuning_value": by_number[n].values[0],
            "probe_values": keys.plain(probes[n].user_attrs)[keys.PROBE_VALUES] if n in probes else None,
            "probe_mean": probes[n].value if n in probes else None,
        }
        for n in numbers
    ]
    # best mean first; a tie keeps the better tuning value (the candidates are in that order)
    chosen = numbers[0] if len(rows) < 2 else max(rows, key=lambda r: sign * r["probe_mean"])["trial"]
    for r in rows:
        r["chosen"] = r["trial"] == chosen
    record = {
        "rule": "best mean validation objective over the probe seeds (a diverged seed at the chance level)",
        "seeds": [SELECT_SEED + i for i in range(spec.retrain.select.seeds)],
        "candidates": rows,
        "best_tuning_trial": numbers[0],
    }
    return chosen, record
