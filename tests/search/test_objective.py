"""The objective: a proposal equal to a finished trial's parameters is resampled, then reused, never retrained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from hpo.config.study import load_study
from hpo.models import kernel_provenance
from hpo.search.objective import DuplicateConfiguration, Objective
from hpo.search.studies import load_study_dataset
from hpo.storage import keys
from tests.search.conftest import make_study


def test_a_repeated_configuration_is_resampled_then_reused(tmp_path: Path) -> None:
    spec = load_study(
        make_study(
            tmp_path,
            architectures=["shared_bottom"],
            sampler={"name": "random", "seed": 0},
            training={"epochs": 1, "device": "cpu"},
        )
    )
    ds = load_study_dataset(spec)
    objective = Objective(spec, "shared_bottom", ds, "cpu", worker_id=3)
    study = optuna.create_study(direction="minimize")
    first = study.ask()
    value = objective(first)
    study.tell(first, value)
    assert keys.plain(first.user_attrs)["worker_id"] == 3 and isinstance(
        keys.plain(first.user_attrs)["sampler_seed"], int
    )
    params = dict(first.params)

    study.enqueue_trial(params, user_attrs={"ticket": 1})  # the sampler proposes the same point again
    again = study.ask()
    with pytest.raises(DuplicateConfiguration):
        objective(again)
    assert keys.plain(again.user_attrs)["duplicate_of"] == first.number
    study.tell(again, state=optuna.trial.TrialState.FAIL)

    study.enqueue_trial(
        params, user_attrs={"ticket": 1, "resamples": 2}
    )  # still the same after two resamples
    last = study.ask()
    assert objective(last) == value  # the earlier result, not a second training
    assert keys.plain(last.user_attrs)["reused_from"] == first.number
    assert keys.plain(last.user_attrs)["metrics"] == keys.plain(first.user_attrs)["metrics"]


@pytest.mark.parametrize("pruner", [None, optuna.pruners.MedianPruner(n_startup_trials=5)])
def test_every_epoch_value_is_stored_with_or_without_a_pruner(
    tmp_path: Path, pruner: optuna.pruners.BasePruner | None
) -> None:
    """Without a pruner the epoch values are written in batches (at most every LIVE_SECONDS, the rest with the
    outcome); with one, each as its epoch ends. Either way the stored trial holds every epoch and the live line."""
    from hpo.storage.engine import open_storage

    spec = load_study(
        make_study(
            tmp_path,
            architectures=["shared_bottom"],
            training={"epochs": 4, "patience": None, "device": "cpu"},
        )
    )
    objective = Objective(spec, "shared_bottom", load_study_dataset(spec), "cpu")
    storage = open_storage(f"sqlite:///{tmp_path / 'e.db'}", heartbeat=False)
    study = optuna.create_study(direction="minimize", storage=storage, pruner=pruner)
    trial = study.ask()
    study.tell(trial, objective(trial))
    stored = study.trials[0]
    assert sorted(stored.intermediate_values) == [1, 2, 3, 4]
    assert all(v > 0 for v in stored.intermediate_values.values())  # validation MSE of each epoch
    assert keys.plain(stored.user_attrs)["live"]["epoch"] in (1, 2, 3, 4)
    assert keys.plain(stored.user_attrs)["kernel"] == kernel_provenance(
        "cpu"
    )  # compiled, or fallback and why


def test_a_trial_writes_its_proposal_setup_and_model_at_once_and_its_outcome_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite every write transaction is a file sync: a trial of a study without a pruner, shorter than the
    live line's interval, writes two of its own (the proposal with what it sets up and what was built from it,
    then the outcome with the epoch values), and the stored trial holds all of it."""
    from hpo.search import objective as objective_module
    from hpo.storage.engine import open_storage

    monkeypatch.setattr(objective_module, "LIVE_SECONDS", 1e9)  # however slow this machine's first epoch is
    from tests.storage.test_attrs import _write_transactions

    spec = load_study(
        make_study(tmp_path, architectures=["shared_bottom"], training={"epochs": 2, "device": "cpu"})
    )
    objective = Objective(spec, "shared_bottom", load_study_dataset(spec), "cpu", worker_id=1)
    storage = open_storage(f"sqlite:///{tmp_path / 'w.db'}", heartbeat=False)
    study = optuna.create_study(direction="minimize", storage=storage, pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    counts, stop = _write_transactions()
    try:
        value = objective(trial)
    finally:
        stop()
    study.tell(trial, value)
    assert counts[1] == 2
    stored = keys.plain(study.trials[0].user_attrs)
    for key in (
        "architecture",
        "model_config",
        "train_config",
        "units_per_layer",
        "parameter_count",
        "threads",
    ):
        assert key in stored, key
    assert (
        stored["worker_id"] == 1
        and stored["metrics"]
        and sorted(study.trials[0].intermediate_values) == [1, 2]
    )
    assert study.trials[0].params == trial.params


def test_a_configuration_that_fails_to_build_is_still_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proposal and what it would have set up are written before the error goes on (so it shows)."""
    from hpo.search import objective as objective_module
    from hpo.storage.engine import open_storage

    spec = load_study(
        make_study(tmp_path, architectures=["shared_bottom"], training={"epochs": 1, "device": "cpu"})
    )
    objective = Objective(spec, "shared_bottom", load_study_dataset(spec), "cpu")

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot build")

    monkeypatch.setattr(objective_module, "create_model", refuse)
    study = optuna.create_study(
        direction="minimize", storage=open_storage(f"sqlite:///{tmp_path / 'f.db'}", heartbeat=False)
    )
    trial = study.ask()
    with pytest.raises(RuntimeError, match="cannot build"):
        objective(trial)
    stored = study.trials[0]
    assert stored.params == trial.params and stored.params
    assert keys.plain(stored.user_attrs)["architecture"] == "shared_bottom"
    assert "units_per_layer" not in keys.plain(stored.user_attrs)


@pytest.mark.parametrize("metric", ["mse", "r2"])
def test_the_chance_level_is_a_constant_outputs_score(tmp_path: Path, metric: str) -> None:
    """What a model that learned nothing scores on validation (predicting the training labels' mean), averaged
    over the objective's tasks as the probe averages them: the settled rule's probe calls a seed there
    collapsed. For MSE it is about each task's variance, for R2 about 0."""
    spec = load_study(make_study(tmp_path, objective={"kind": "mean", "metric": metric}))
    ds = load_study_dataset(spec)
    train_y, valid_y = (ds.splits[s].y.numpy().astype(np.float64) for s in ("train", "valid"))
    const = train_y.mean(axis=0)
    if metric == "mse":
        want = float(np.mean(((valid_y - const) ** 2).mean(axis=0)))
        assert want == pytest.approx(float(np.mean(valid_y.var(axis=0))), rel=0.05)
    else:
        want = float(
            np.mean(1 - ((valid_y - const) ** 2).sum(axis=0) / ((valid_y - valid_y.mean(0)) ** 2).sum(axis=0))
        )
        assert abs(want) < 0.05
    assert Objective(spec, "shared_bottom", ds, "cpu").chance == pytest.approx(want, rel=1e-6)


def test_a_cpu_probe_trains_its_seeds_in_chunks_of_the_activation_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settled rule's probe follows the retrain's CPU chunk rule (``hpo.training.memory.cpu_chunk_cap``): under a
    cap above the model's activations its seeds train as one model, and where the cap is one seed (lowered so that
    the test's small model counts as wide) each seed trains alone, with the same value per seed up to rounding."""
    import hpo.search.objective as objective_module
    from hpo.training import memory

    spec = load_study(
        make_study(
            tmp_path,
            architectures=["shared_bottom"],
            sampler={"name": "random", "seed": 0},
            training={"epochs": 2, "device": "cpu"},
        )
    )
    objective = Objective(spec, "shared_bottom", load_study_dataset(spec), "cpu")
    study = optuna.create_study(direction="minimize")
    trial = study.ask()
    study.tell(trial, objective(trial))
    sizes: list[int] = []
    real_train = objective_module.train

    def counting_train(model: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(model.replicas)
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(objective_module, "train", counting_train)
    monkeypatch.setattr(memory, "CPU_CHUNK_ACTIVATION_BYTES", 1 << 40)  # whatever configuration was sampled
    together = objective.probe_seeds(study.best_trial, 3)
    monkeypatch.setattr(memory, "CPU_CHUNK_ACTIVATION_BYTES", 1)
    parts: list[list[float]] = []
    alone = objective.probe_seeds(study.best_trial, 3, on_part=parts.append)
    assert sizes == [3, 1, 1, 1]
    assert alone == pytest.approx(together, rel=1e-4) and len(set(together)) == 3
    assert parts == [[v] for v in alone]  # each seed's value as it finishes (the settled rule records them)


def test_a_probe_seed_stopped_mid_way_resumes_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settled rule's probe trains a wide configuration's seeds for up to an hour each on a CPU: one stopped
    after its first epoch resumes from the checkpoint beside the database, with the values of a probe never
    stopped, to the bit, and leaves no checkpoint behind."""
    import hpo.search.objective as objective_module
    from hpo.training import checkpoint

    spec = load_study(
        make_study(
            tmp_path,
            architectures=["shared_bottom"],
            sampler={"name": "random", "seed": 0},
            training={"epochs": 3, "patience": None, "device": "cpu"},
        )
    )
    ds = load_study_dataset(spec)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    objective = Objective(spec, "shared_bottom", ds, "cpu", url=url)
    study = optuna.create_study(direction="minimize")
    trial = study.ask()
    study.tell(trial, objective(trial))
    whole = Objective(spec, "shared_bottom", ds, "cpu").probe_seeds(study.best_trial, 2)  # no checkpoints

    monkeypatch.setattr(checkpoint, "EVERY", 0.0)
    real = objective_module.train
    resumed: list[int] = []

    def stopped_after_epoch_1(*a: Any, callback: Any, checkpoint: Any, **kw: Any) -> Any:
        def then_stop(rep: Any) -> None:
            callback(rep)
            if rep.epoch == 1:
                raise KeyboardInterrupt

        return real(*a, callback=then_stop, checkpoint=checkpoint, **kw)

    monkeypatch.setattr(objective_module, "train", stopped_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        objective.probe_seeds(study.best_trial, 2)
    assert len(list((tmp_path / "p.db.checkpoints").rglob("*.pt"))) == 1

    def recording(*a: Any, checkpoint: Any, **kw: Any) -> Any:
        out = real(*a, checkpoint=checkpoint, **kw)
        resumed.append(checkpoint.resumed_epoch)
        return out

    monkeypatch.setattr(objective_module, "train", recording)
    assert objective.probe_seeds(study.best_trial, 2) == whole
    assert resumed[0] == 1 and not (tmp_path / "p.db.checkpoints").exists()
