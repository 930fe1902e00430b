"""Tuning until settled: the rule, bound hits, and a study under two overlapping workers that stops each
architecture once, at its own trial count, for its recorded reason, and adds nothing on resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from hpo.config.space import SearchSpace
from hpo.config.study import TrialBudget, load_study
from hpo.errors import ConfigError
from hpo.estimators import resolvable_gap
from hpo.search.settle import bound_hits, decide, settle, tolerance_of
from hpo.search.status import storage_status
from hpo.search.tickets import tickets_of
from hpo.storage import keys
from tests.search.conftest import make_study

RULE = TrialBudget(min=4, max=10, tolerance=0.01)


def test_the_rule_extends_settles_and_stops_at_max() -> None:
    rising = [0.50, 0.60, 0.70, 0.80]  # the last doubling bought 0.1 > 0.01
    d = decide(rising, higher_is_better=True, target=4, rule=RULE, tolerance=0.01, hits=[])
    assert (d.stop_reason, d.next_target) == (None, 6)  # grow 0.5: 4 + 2
    flat = [0.80, 0.80, 0.80, 0.80, 0.80, 0.801]
    assert (
        decide(flat, higher_is_better=True, target=6, rule=RULE, tolerance=0.01, hits=[]).stop_reason
        == "settled"
    )
    on_bound = decide(
        flat, higher_is_better=True, target=6, rule=RULE, tolerance=0.01, hits=["lr=0.1 (high bound)"]
    )
    assert (on_bound.stop_reason, on_bound.next_target) == (None, 9)  # never settled on a bound
    assert (
        decide(rising, higher_is_better=True, target=10, rule=RULE, tolerance=0.01, hits=[]).stop_reason
        == "max"
    )
    # lower is better: a falling loss is an improvement
    assert (
        decide(
            [0.5, 0.4, 0.3, 0.2], higher_is_better=False, target=4, rule=RULE, tolerance=0.01, hits=[]
        ).stop_reason
        is None
    )


def test_a_zero_gain_on_few_trials_is_not_settled_when_its_interval_reaches_the_tolerance() -> None:
    """Four trials whose best two tie show no gain by luck; resampled, the one good trial may be missing, so the
    interval reaches far past the tolerance and the rule keeps tuning. With the same spread over many trials the
    top is well sampled and the rule settles."""
    lucky = [0.70, 0.75, 0.80, 0.80]
    d = decide(lucky, higher_is_better=True, target=4, rule=RULE, tolerance=0.01, hits=[])
    assert d.gain < 0.01 < d.gain_high
    assert d.stop_reason is None and d.record()["gain_high"] == d.gain_high
    many = [0.70, 0.75] + [0.80] * 8
    assert decide(many, higher_is_better=True, target=10, rule=RULE, tolerance=0.01, hits=[]).stop_reason == (
        "settled"
    )


def test_bounds_are_named_but_the_budget_ceiling_is_not_one() -> None:
    space = SearchSpace.model_validate(
        {
            "architecture": "mmoe",
            "params": {
                "units": {"type": "int", "low": 16, "high": 2048, "log": True},
                "experts": {"type": "int", "low": 2, "high": 8},
                "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            },
            "model": {"expert_units": "[units]", "n_experts": "experts"},
        }
    )
    assert bound_hits({"units": 2048, "experts": 8, "lr": 0.0999}, [space], 2048) == [
        "experts=8 (high bound)",
        "lr=0.0999 (high bound)",
    ]
    assert bound_hits({"units": 16, "experts": 4, "lr": 1e-3}, [space], 2048) == ["units=16 (low bound)"]
    floor = SearchSpace.model_validate(
        {
            "architecture": "shared_bottom",
            "params": {"n_layers": {"type": "int", "low": 1, "high": 3}},
            "model": {"bottom_units": "[64] * n_layers"},
        }
    )
    assert bound_hits({"n_layers": 1}, [floor], 2048) == []  # one layer: no wider range goes lower
    assert bound_hits({"n_layers": 3}, [floor], 2048) == ["n_layers=3 (high bound)"]


def test_a_convergence_budget_is_validated_and_refuses_n_trials(tmp_path: Path) -> None:
    path = make_study(tmp_path, trials={"min": 3, "max": 2})
    with pytest.raises(ConfigError, match=r"trials.max \(2\) is below trials.min \(3\)"):
        load_study(path)
    spec = load_study(make_study(tmp_path, trials={"min": 3, "max": 6, "tolerance": 0.001}))
    assert tickets_of(spec, "mmoe", None) == (3, None)
    with pytest.raises(ConfigError, match="--n-trials does not apply"):
        tickets_of(spec, "mmoe", 5)


def settled_study(tmp_path: Path) -> Path:
    """Shared-Bottom on a one-point space (every trial the same value: settled at min) and MMoE over a learning
    rate range (every doubling still gains something: runs to max)."""
    (tmp_path / "spaces").mkdir()
    one = {
        "architecture": "shared_bottom",
        "params": {"units": {"type": "categorical", "choices": [16]}},
        "model": {"bottom_units": "[units]", "tower_units": "[8]"},
    }
    wide = {
        "architecture": "mmoe",
        "params": {"units": {"type": "int", "low": 4, "high": 64, "log": True}},
        "model": {"expert_units": "[units]", "n_experts": "4", "tower_units": "[8]"},
    }
    (tmp_path / "spaces" / "one.yaml").write_text(yaml.safe_dump(one))
    (tmp_path / "spaces" / "wide.yaml").write_text(yaml.safe_dump(wide))
    (tmp_path / "spaces" / "opt.yaml").write_text(
        yaml.safe_dump({"params": {"lr": {"type": "categorical", "choices": [0.01]}}})
    )
    return make_study(
        tmp_path,
        architectures=[
            {"name": "shared_bottom", "search_space": str(tmp_path / "spaces" / "one.yaml")},
            {"name": "mmoe", "search_space": str(tmp_path / "spaces" / "wide.yaml")},
        ],
        optimizer_space=str(tmp_path / "spaces" / "opt.yaml"),
        trials={"min": 3, "max": 7, "tolerance": 1e-12, "grow": 0.5},
        sampler={"name": "tpe", "seed": 0, "options": {"n_startup_trials": 2}},
        training={"epochs": 2, "patience": None, "batch_size": 256, "device": "cpu"},
        dataset={
            "kind": "synthetic",
            "p": 0.7,
            "d": 8,
            "n_train": 600,
            "n_valid": 200,
            "n_test": 200,
            "seed": 0,
        },
    )


def test_two_workers_stop_each_architecture_once_at_its_own_count(tmp_path: Path) -> None:
    path = settled_study(tmp_path)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run = [sys.executable, "-m", "hpo.cli", "run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]
    procs = [subprocess.Popen([*run, "--workers", "2"]), subprocess.Popen(run)]  # overlapping: three workers
    assert [p.wait(timeout=900) for p in procs] == [0, 0]
    spec = load_study(path)
    counts = {}
    for arch in ("shared_bottom", "mmoe"):
        study = optuna.load_study(study_name=spec.study_name(arch), storage=url)
        attrs = keys.plain(study.user_attrs)
        done = [
            t
            for t in study.trials
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        ]
        tickets = sorted(keys.plain(t.user_attrs)["ticket"] for t in done)
        assert tickets == list(range(len(done))), (arch, tickets)  # each ticket once, none past the target
        assert len(done) <= 7 and attrs["stopped_at"] == len(done)
        stops = [h for h in attrs["settle_history"] if not h["decision"].startswith("extend")]
        assert len(stops) == 1 and stops[0]["decision"] == attrs["stop_reason"], attrs["settle_history"]
        counts[arch] = (attrs["stop_reason"], len(done))
    # Shared-Bottom: 3 trials cannot bound the gain (the interval needs four), so it extends once to 5 and settles
    assert counts == {"shared_bottom": ("settled", 5), "mmoe": ("max", 7)}, counts
    status = {e["architecture"]: e for e in storage_status(url)}
    assert status["mmoe"]["stop_reason"] == "max" and status["shared_bottom"]["stopped_at"] == 5

    # resuming a stopped study adds nothing: no trial, no judgement
    def recorded() -> dict[str, tuple[int, int]]:
        out = {}
        for arch in counts:
            study = optuna.load_study(study_name=spec.study_name(arch), storage=url)
            out[arch] = (len(study.trials), len(keys.plain(study.user_attrs)["settle_history"]))
        return out

    before = recorded()
    subprocess.run(run, check=True, timeout=300)
    assert recorded() == before


def test_pruned_trials_count_with_their_best_value_before_the_stop() -> None:
    """The rule's values: complete trials' values and pruned trials' best intermediate value, by direction."""
    from hpo.search.settle import rule_values

    d = optuna.distributions.FloatDistribution(0, 1)

    def trial(state: optuna.trial.TrialState, value: float | None, steps: dict[int, float]) -> object:
        return optuna.trial.create_trial(
            state=state, value=value, params={"x": 0.5}, distributions={"x": d}, intermediate_values=steps
        )

    S_ = optuna.trial.TrialState
    trials = [trial(S_.COMPLETE, 0.9, {1: 0.8, 2: 0.9}), trial(S_.PRUNED, None, {1: 0.6, 2: 0.7, 3: 0.65})]
    trials.append(trial(S_.PRUNED, None, {}))  # pruned before any report: nothing to count
    assert rule_values(trials, higher_is_better=True) == [0.9, 0.7]
    assert rule_values(trials, higher_is_better=False) == [0.9, 0.6]


def test_the_auto_tolerance_leaves_a_collapsed_probe_seed_out_and_reprobes_an_old_record(
    tmp_path: Path,
) -> None:
    """``tolerance: auto`` from a probe where one of four seeds learned nothing: the spread is the healthy seeds'
    (the sample sd of all four, ~0.2, would settle anything), every value is recorded with the seed left out.
    A study recorded before the values were kept (``seed_sd`` alone) is probed again once, the old figure kept."""
    path = make_study(tmp_path, trials={"min": 3, "max": 6, "until": "settled", "tolerance": "auto"})
    spec = load_study(path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.94))
    calls: list[int] = []

    def probe(best: optuna.trial.FrozenTrial, n: int, start: int = 0, on_part: object = None) -> list[float]:
        calls.append(n)
        return [0.9471, 0.9468, 0.5512, 0.9475][:n]

    healthy = float(np.std([0.9471, 0.9468, 0.9475], ddof=1))
    pairs = spec.family * (spec.family - 1) // 2
    want = resolvable_gap(healthy, spec.retrain.seeds, comparisons=pairs)
    assert tolerance_of(url, study, spec, probe) == pytest.approx(want)
    attrs = keys.plain(study.user_attrs)
    assert attrs["seed_sd"] == pytest.approx(healthy) and attrs["seed_sd_probe"]["collapsed"] == [2]
    assert attrs["seed_sd_probe"]["values"] == [0.9471, 0.9468, 0.5512, 0.9475]
    assert "1 collapsed, left out (0.5512)" in attrs["seed_sd_probe"]["summary"]
    assert tolerance_of(url, study, spec, probe) == pytest.approx(want) and calls == [4]  # measured once

    # an old record: the sample sd of every seed, no values -> probed again, the old one kept
    old = optuna.create_study(study_name="old", storage=url, direction="maximize")
    old.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.94))
    old.set_user_attr(keys.key(keys.SEED_SD), 0.197)
    old.set_user_attr(keys.key(keys.SEED_SD_PROBE), {"trial": 0, "seeds": 4})
    assert tolerance_of(url, old, spec, probe) == pytest.approx(want) and calls == [4, 4]
    attrs = keys.plain(old.user_attrs)
    assert attrs["seed_sd_superseded"] == {"seed_sd": 0.197, "probe": {"trial": 0, "seeds": 4}}
    assert attrs["seed_sd"] == pytest.approx(healthy)
    tolerance_of(url, old, spec, probe)
    assert calls == [4, 4]


def test_a_probe_stopped_part_way_takes_up_the_seeds_it_finished(tmp_path: Path) -> None:
    """A wide configuration's probe seeds train one at a time on a CPU, for hours in all: a worker stopped after
    two of four keeps them (``seed_sd_partial``), and the next judgement trains the other two only."""
    spec = load_study(
        make_study(tmp_path, trials={"min": 3, "max": 6, "until": "settled", "tolerance": "auto"})
    )
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.94))
    values = [0.9471, 0.9468, float("nan"), 0.9475]  # a diverged seed is kept as such
    calls: list[tuple[int, int]] = []

    def stopped(best: optuna.trial.FrozenTrial, n: int, start: int = 0, on_part: Any = None) -> list[float]:
        calls.append((n, start))
        on_part(values[start : start + 1])
        on_part(values[start + 1 : start + 3])
        raise KeyboardInterrupt  # the worker stopped in the last seed

    def whole(best: optuna.trial.FrozenTrial, n: int, start: int = 0, on_part: Any = None) -> list[float]:
        calls.append((n, start))
        return values[start : start + n]

    with pytest.raises(KeyboardInterrupt):
        tolerance_of(url, study, spec, stopped)
    tolerance_of(url, study, spec, whole)
    assert calls == [(4, 0), (1, 3)]
    recorded = keys.plain(study.user_attrs)["seed_sd_probe"]["values"]
    assert recorded[:2] == values[:2] and recorded[2] is None and recorded[3] == values[3]


# the probe that showed two bad seeds of four (census group 1, replicate 2, MMoE trial 7): the recorded values
CENSUS_PROBE = [0.9469400039428135, 0.9470583234744628, 0.8805147976448464, 0.5]


def _probed_study(tmp_path: Path, values: list[float]) -> tuple[str, optuna.Study, object]:
    """A study whose recorded probe (4 seeds of trial 0) holds ``values``, judged once under the old rule."""
    spec = load_study(
        make_study(tmp_path, trials={"min": 4, "max": 12, "until": "settled", "tolerance": "auto"})
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(study_name="r", storage=url, direction="maximize")
    for v in (0.9440, 0.9462, 0.9466, 0.9468):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=v))
    study.set_user_attr(keys.key(keys.SEED_SD), float(np.std(values, ddof=1)))
    study.set_user_attr(
        keys.key(keys.SEED_SD_PROBE),
        {"trial": 0, "seeds": 4, "values": values, "failed": [], "collapsed": []},
    )
    return url, study, spec


def test_two_bad_seeds_of_four_are_found_and_the_probe_topped_up(tmp_path: Path) -> None:
    """The census probe (0.947, 0.947, 0.881, 0.500): Qn alone cannot see two bad seeds of four (its sd, 0.215,
    made a tolerance of 0.20 that settled MMoE at 12 trials). The chance level finds the seed at 0.5, then Qn the
    one at 0.881; two healthy seeds are too few, so four more (seeds 4..7) are trained and the spread rests on
    the six healthy ones; nothing is trained again after that."""
    url, study, spec = _probed_study(tmp_path, CENSUS_PROBE)
    calls: list[tuple[int, int]] = []
    more = [0.9468, 0.9473, 0.9466, 0.9471]

    def probe(best: optuna.trial.FrozenTrial, n: int, start: int = 0, on_part: object = None) -> list[float]:
        calls.append((n, start))
        return more[:n]

    tol = tolerance_of(url, study, spec, probe, chance=0.5)
    healthy = CENSUS_PROBE[:2] + more
    pairs = spec.family * (spec.family - 1) // 2
    assert tol == pytest.approx(
        resolvable_gap(float(np.std(healthy, ddof=1)), spec.retrain.seeds, comparisons=pairs)
    )
    assert calls == [(4, 4)] and tol < 1e-3
    attrs = keys.plain(study.user_attrs)
    assert attrs["seed_sd_probe"]["values"] == CENSUS_PROBE + more and attrs["seed_sd_probe"]["seeds"] == 8
    assert attrs["seed_sd_probe"]["collapsed"] == [2, 3]
    assert attrs["seed_sd_superseded"]["seed_sd"] == pytest.approx(0.2147, abs=1e-4)
    assert tolerance_of(url, study, spec, probe, chance=0.5) == pytest.approx(tol) and calls == [(4, 4)]


def test_a_probe_with_too_few_healthy_seeds_after_its_top_up_gives_no_tolerance(tmp_path: Path) -> None:
    url, study, spec = _probed_study(tmp_path, CENSUS_PROBE)
    calls: list[int] = []

    def probe(best: optuna.trial.FrozenTrial, n: int, start: int = 0, on_part: object = None) -> list[float]:
        calls.append(start)
        return [0.5, 0.5, float("nan"), 0.5][:n]

    assert np.isnan(tolerance_of(url, study, spec, probe, chance=0.5)) and calls == [4]
    attrs = keys.plain(study.user_attrs)
    assert attrs["seed_sd"] is None and attrs["seed_sd_probe"]["failed"] == [6]
    assert "over 2 of 8 seeds" in attrs["seed_sd_probe"]["summary"]
    assert np.isnan(tolerance_of(url, study, spec, probe, chance=0.5)) and calls == [4]  # topped up once only


def test_a_settled_stop_on_a_since_revised_tolerance_is_reopened_once(tmp_path: Path) -> None:
    """A study the old rule settled (tolerance 0.20 from the census probe's sd) is reopened at its next
    judgement: today's tolerance (the healthy seeds', after a top-up) is far under the gain's upper end, so it
    is extended as the judgement would then have extended it, with the reopening recorded. A settled stop that
    today's tolerance also makes stays."""
    url, study, spec = _probed_study(tmp_path, CENSUS_PROBE)
    history = [{"trials": 4, "gain": 4e-4, "gain_high": 6.2e-4, "tolerance": 0.202, "bound_hits": [],
                "decision": "settled"}]  # fmt: skip
    study.set_user_attr(keys.key(keys.SETTLE_HISTORY), history)
    study.set_user_attr(keys.key(keys.STOP_REASON), "settled")
    study.set_user_attr(keys.key(keys.STOPPED_AT), 4)
    queued: list[int] = []

    def probe(best: optuna.trial.FrozenTrial, n: int, start: int = 0, on_part: object = None) -> list[float]:
        return [0.9468, 0.9473, 0.9466, 0.9471][:n]

    def judge() -> bool:
        return settle(url, study, spec, higher_is_better=True, spaces=[], probe=probe, chance=0.5,
                      enqueue=lambda s, n: queued.append(n))  # fmt: skip

    assert judge() is True and queued == [6]
    attrs = keys.plain(study.user_attrs)
    assert attrs.get("stop_reason") is None and attrs.get("stopped_at") is None
    assert attrs["tickets_target"] == 6
    entry = attrs["settle_history"][-1]
    assert entry["decision"] == "reopened: extend to 6" and entry["tolerance"] < 1e-3
    assert "tolerance of 0.202" in entry["why"]
    assert storage_status(url)[0].get("stop_reason") is None
    # reopened, it is judged as any study mid-way (here its new tickets never ran): no second reopening
    assert judge() is False and queued == [6]
    assert len(keys.plain(study.user_attrs)["settle_history"]) == 2

    # settled under today's tolerance too: stays settled
    url2, kept, spec2 = _probed_study(tmp_path / "b", [0.9469, 0.9471, 0.9466, 0.9473])
    kept.set_user_attr(keys.key(keys.SETTLE_HISTORY), [{**history[0], "gain_high": 1e-9, "tolerance": 5e-4}])
    kept.set_user_attr(keys.key(keys.STOP_REASON), "settled")
    assert settle(url2, kept, spec2, higher_is_better=True, spaces=[], probe=probe, chance=0.5,
                  enqueue=lambda s, n: queued.append(n)) is False  # fmt: skip
    assert keys.plain(kept.user_attrs)["stop_reason"] == "settled" and queued == [6]
    confirmed = keys.plain(kept.user_attrs)[
        "settle_history"
    ]  # recorded once, with the tolerance it rests on now
    assert (
        len(confirmed) == 2 and confirmed[-1]["decision"] == "settled" and confirmed[-1]["tolerance"] < 5e-4
    )
    assert "judged again under a revised tolerance (0.0005 -> " in confirmed[-1]["why"]
    assert settle(url2, kept, spec2, higher_is_better=True, spaces=[], probe=probe, chance=0.5,
                  enqueue=lambda s, n: queued.append(n)) is False  # fmt: skip
    assert len(keys.plain(kept.user_attrs)["settle_history"]) == 2

    # settled at max on a revised tolerance: it stays stopped, now for reaching max, not settled
    url3, at_max, spec3 = _probed_study(tmp_path / "c", CENSUS_PROBE)
    at_max.set_user_attr(keys.key(keys.SETTLE_HISTORY), [{**history[0], "trials": 12}])
    at_max.set_user_attr(keys.key(keys.STOP_REASON), "settled")
    at_max.set_user_attr(keys.key(keys.STOPPED_AT), 12)
    assert settle(url3, at_max, spec3, higher_is_better=True, spaces=[], probe=probe, chance=0.5,
                  enqueue=lambda s, n: queued.append(n)) is False  # fmt: skip
    attrs = keys.plain(at_max.user_attrs)
    assert (attrs["stop_reason"], attrs["stopped_at"], queued) == ("max", 12, [6])
    assert attrs["settle_history"][-1]["decision"] == "max" and "0.202" in attrs["settle_history"][-1]["why"]


def test_a_study_with_an_auto_tolerance_records_its_probe_seeds(tmp_path: Path) -> None:
    """End to end with the real probe (the best configuration retrained on ``probe_seeds`` seeds as one
    vectorised model): each seed's value is recorded, and the tolerance of every judgement comes from them."""
    path = settled_study(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["architectures"] = spec["architectures"][:1]
    spec["trials"] = {"min": 3, "max": 4, "until": "settled", "tolerance": "auto", "probe_seeds": 3}
    # long enough to learn: the smoke study's 3 epochs leave MSEs at the constant predictor's, which the probe
    # rightly calls collapsed (then tops up, then gives no tolerance: tested above)
    spec["training"] = {"epochs": 30, "patience": 5, "batch_size": 256, "device": "cpu"}
    path.write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path / 'a.db'}"
    subprocess.run(
        [sys.executable, "-m", "hpo.cli", "run", str(path), "--storage", url, "--devices", "cpu", "--quiet"],
        check=True,
        timeout=600,
    )
    loaded = load_study(path)
    attrs = keys.plain(
        optuna.load_study(study_name=loaded.study_name("shared_bottom"), storage=url).user_attrs
    )
    probe = attrs["seed_sd_probe"]
    assert len(probe["values"]) == 3 and all(0.0 < v < 100.0 for v in probe["values"]), probe  # MSEs
    assert probe["collapsed"] == [] and probe["failed"] == [], probe
    assert attrs["seed_sd"] == pytest.approx(np.std(probe["values"], ddof=1)) or probe["collapsed"]
    tolerances = [h["tolerance"] for h in attrs["settle_history"]]
    pairs = max(1, loaded.family * (loaded.family - 1) // 2)
    want = resolvable_gap(attrs["seed_sd"], loaded.retrain.seeds, comparisons=pairs)
    assert tolerances and tolerances == pytest.approx([want] * len(tolerances))
