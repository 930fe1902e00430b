"""Ranges that widen on a bound hit (``expand``): the widening rule, the budget check, the sampler that keeps
modelling a widened parameter, and a study under overlapping workers that records each widening once and draws
every later trial from the widened range."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from hpo.config.space import ParamRange, SearchSpace, load_space
from hpo.config.study import load_study
from hpo.errors import ConfigError
from hpo.search.settle import bound_sides
from hpo.search.studies import check_inputs
from hpo.search.validate import check_space
from hpo.search.widen import WideningSampler, current_ranges, widen
from hpo.storage import keys
from tests.search.conftest import make_study


def r(**kw: object) -> ParamRange:
    return ParamRange.model_validate({"expand": True, **kw})


def test_log_bounds_double_or_halve_and_units_stop_at_the_budget() -> None:
    tower = r(type="int", low=4, high=512, log=True)
    assert tower.widened("high", "tower_units", 2048) == tower.model_copy(update={"high": 1024.0})
    assert r(type="int", low=4, high=1500, log=True).widened("high", "tower_units", 2048).high == 2048
    assert r(type="int", low=4, high=2048, log=True).widened("high", "tower_units", 2048) is None
    assert (
        r(type="int", low=16, high=64, log=True).widened("high", "n_experts", 2048).high == 128
    )  # not units
    low = r(type="int", low=3, high=64, log=True)
    assert low.widened("low", "layer_units", 2048).low == 1  # a count stays a count
    assert r(type="int", low=1, high=64, log=True).widened("low", "layer_units", 2048) is None
    lr = r(type="float", low=1e-4, high=1e-2, log=True)
    assert lr.widened("low", "lr", 2048).low == pytest.approx(5e-5)
    assert lr.widened("high", "lr", 2048).high == pytest.approx(2e-2)


def test_linear_bounds_move_by_half_the_span_in_whole_steps_within_the_limits() -> None:
    epochs = r(type="int", low=2, high=30)
    assert epochs.widened("high", "epochs", 2048).high == 44
    assert epochs.widened("low", "epochs", 2048).low == 1  # an int count of 1 or more stays at 1 or more
    stepped = r(type="int", low=2, high=30, step=4)
    assert stepped.widened("high", "epochs", 2048).high == 46  # 30 + 4 x ceil(14 / 4)
    capped = ParamRange(type="int", low=2, high=30, step=4, expand={"high": 40})
    assert capped.widened("high", "epochs", 2048).high == 38  # 40 cuts between steps: whole steps from 2
    dropout = ParamRange(type="float", low=0.0, high=0.5, expand={"high": 0.9})
    assert dropout.widened("low", "dropout", 2048) is None  # a non-negative range stays non-negative
    assert dropout.widened("high", "dropout", 2048).high == 0.75
    assert dropout.widened("high", "dropout", 2048).widened("high", "dropout", 2048).high == 0.9
    assert ParamRange(type="int", low=2, high=8).widened("high", "n", 2048) is not None  # the rule itself
    assert not ParamRange(type="int", low=2, high=8).expandable()
    with pytest.raises(ValueError, match="`expand` widens int and float ranges"):
        ParamRange(type="categorical", choices=[1, 2], expand=True)


def test_limits_inside_the_range_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expand.high \(20.0\) must not be below high \(30.0\)"):
        ParamRange(type="int", low=2, high=30, expand={"high": 20})
    with pytest.raises(ValueError, match=r"expand.low \(3.0\) must not exceed low \(2.0\)"):
        ParamRange(type="int", low=2, high=30, expand={"low": 3})
    with pytest.raises(ValueError, match="cannot widen to low <= 0"):
        ParamRange(type="float", low=1e-4, high=1e-2, log=True, expand={"low": 0})


def mmoe_space(**n_experts: object) -> SearchSpace:
    return SearchSpace.model_validate(
        {
            "architecture": "mmoe",
            "params": {
                "n_experts": {"type": "int", **n_experts},
                "lr": {"type": "float", "low": 0.1, "high": 1},
            },
            "model": {"n_experts": "n_experts", "expert_units": "[256]", "tower_units": "[8]"},
        }
    )


def test_a_widening_that_would_break_the_budget_is_left_out() -> None:
    """8 experts of 256 units fill the 2048-unit budget: widening their count would not fit, so the bound stays
    (and stays a hit); a float of the same space still widens, and each record says what moved."""
    space = mmoe_space(low=2, high=8, expand=True)

    def fits(s: SearchSpace) -> bool:
        return not check_space(s, "mmoe", 2, budget=2048, samples=20).problems

    sides = bound_sides({"n_experts": 8, "lr": 0.1}, [space], 2048)
    assert sides == [("n_experts", "high"), ("lr", "low")]
    assert widen([space], sides, budget=2048, trials=12, fits=fits) == []  # lr has no `expand`
    wide = mmoe_space(low=2, high=6, expand=True)
    records = widen([wide], [("n_experts", "high")], budget=2048, trials=12, fits=fits)
    assert records == [
        {"trials": 12, "param": "n_experts", "side": "high", "from": [2.0, 6.0], "to": [2.0, 8.0]}
    ]
    assert current_ranges(records) == {"n_experts": (2.0, 8.0)}


def test_the_gp_sampler_keeps_modelling_a_widened_parameter() -> None:
    """Optuna's GP sampler models only parameters with one distribution in every trial: after a widening it would
    draw the parameter at random. The wrapper hands it the widened range, which holds every earlier value."""
    narrow, wide = optuna.distributions.IntDistribution(4, 8), optuna.distributions.IntDistribution(4, 16)
    x = optuna.distributions.FloatDistribution(0, 1)
    space = SearchSpace.model_validate(
        {
            "params": {
                "units": {"type": "int", "low": 4, "high": 8, "expand": True},
                "x": {"type": "float", "low": 0, "high": 1},
            }
        }
    )
    gp = optuna.samplers.GPSampler(seed=0, n_startup_trials=2)
    study = optuna.create_study(sampler=WideningSampler(gp, [space]), direction="maximize")
    for i, (units, dist) in enumerate([(4, narrow), (8, narrow), (6, narrow), (12, wide), (16, wide)]):
        study.add_trial(
            optuna.trial.create_trial(
                params={"units": units, "x": i / 5}, distributions={"units": dist, "x": x}, value=units / 16
            )
        )
    record = {"trials": 3, "param": "units", "side": "high", "from": [4, 8], "to": [4, 16]}
    study.set_user_attr(keys.key(keys.SPACE_EXPANSIONS), [record])
    trial = study.ask()
    frozen = study._storage.get_trial(trial._trial_id)
    assert "units" not in gp.infer_relative_search_space(study, frozen)  # the bare sampler drops it
    assert study.sampler.infer_relative_search_space(study, frozen) == {"units": wide, "x": x}
    value = trial.suggest_int("units", 4, 16)
    assert 4 <= value <= 16 and "units" in trial.relative_params  # drawn by the GP, not at random


def widening_study(tmp_path: Path, trials: object) -> Path:
    """A small MMoE trained for 1 or 2 epochs of two batches each: far from converged, so more epochs are better
    and the best keeps landing on the upper bound, which widens (up to 9) at each judgement before ``max``."""
    (tmp_path / "spaces").mkdir(exist_ok=True)
    space = {
        "architecture": "mmoe",
        "params": {"units": {"type": "categorical", "choices": [8]}},
        "model": {"expert_units": "[units]", "n_experts": "2", "tower_units": "[4]"},
    }
    (tmp_path / "spaces" / "w.yaml").write_text(yaml.safe_dump(space))
    epochs = {"type": "int", "low": 1, "high": 2, "expand": {"high": 9}}
    (tmp_path / "spaces" / "opt.yaml").write_text(
        yaml.safe_dump({"params": {"lr": {"type": "categorical", "choices": [0.01]}, "epochs": epochs}})
    )
    return make_study(
        tmp_path,
        architectures=[{"name": "mmoe", "search_space": str(tmp_path / "spaces" / "w.yaml")}],
        optimizer_space=str(tmp_path / "spaces" / "opt.yaml"),
        trials=trials,
        sampler={"name": "tpe", "seed": 0, "options": {"n_startup_trials": 2}},
        training={"epochs": 1, "patience": None, "batch_size": 256, "device": "cpu"},
        dataset={
            "kind": "synthetic",
            "p": 0.7,
            "d": 8,
            "n_train": 400,
            "n_valid": 200,
            "n_test": 200,
            "seed": 0,
        },
    )


def test_expand_needs_the_settled_rule(tmp_path: Path) -> None:
    spec = load_study(widening_study(tmp_path, 6))
    with pytest.raises(
        ConfigError, match=r"trials: `expand` on epochs widens a range only when the settled rule"
    ):
        check_inputs(spec, None)


def test_overlapping_workers_widen_once_per_judgement_and_draw_from_the_widened_range(tmp_path: Path) -> None:
    path = widening_study(tmp_path, {"min": 3, "max": 12, "tolerance": 1e-12, "grow": 0.5})
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run = [sys.executable, "-m", "hpo.cli", "run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]
    procs = [subprocess.Popen([*run, "--workers", "2"]), subprocess.Popen(run)]
    assert [p.wait(timeout=900) for p in procs] == [0, 0]
    study = optuna.load_study(study_name=load_study(path).study_name("mmoe"), storage=url)
    attrs = keys.plain(study.user_attrs)
    records = attrs[keys.SPACE_EXPANSIONS]
    history = attrs[keys.SETTLE_HISTORY]
    # judged at 3, 5 and 8 trials, then max at 12; at 3, two epochs beat one (two batches each), so it widened
    assert [h["trials"] for h in history] == [3, 5, 8, 12] and records[0]["trials"] == 3, history
    declared = load_space(tmp_path / "spaces" / "opt.yaml").params["epochs"]
    high = 2.0
    for h in history:  # every judgement that found epochs on its upper bound below the limit widened it, once
        on_top = any(hit.startswith("epochs=") and "high" in hit for hit in h["bound_hits"])
        mine = [w for w in records if w["trials"] == h["trials"]]
        if on_top and high < 9 and h["decision"].startswith("extend"):
            wider = declared.model_copy(update={"high": high}).widened("high", "epochs", 2048)
            assert wider is not None and [w["to"] for w in mine] == [[1.0, wider.high]], (h, records)
            assert h["widened"] == [f"epochs 1..{high:g} -> 1..{wider.high:g}"]
            high = wider.high
        else:
            assert not mine and "widened" not in h, (h, records)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 12 and attrs[keys.STOP_REASON] == "max"  # a tolerance of 1e-12 is never met
    for t in done:  # each trial drawn from the range current when its ticket was queued
        ticket = keys.plain(t.user_attrs)[keys.TICKET]
        current = [w["to"] for w in records if w["trials"] <= ticket]
        low, high = current[-1] if current else (1, 2)
        dist = t.distributions["epochs"]
        assert (dist.low, dist.high) == (low, high) and low <= t.params["epochs"] <= high, (ticket, records)
    subprocess.run(run, check=True, timeout=300)  # resuming a stopped study adds nothing, widens nothing
    again = optuna.load_study(study_name=study.study_name, storage=url)
    assert len(again.trials) == len(study.trials)
    assert keys.plain(again.user_attrs)[keys.SPACE_EXPANSIONS] == records
    out = tmp_path / "rep" / "w.html"  # the report's #settled section names every widening
    subprocess.run(
        [*run[:3], "report", str(path), "--storage", url, "--out", str(out)], check=True, timeout=300
    )
    row = pd.read_csv(tmp_path / "rep" / "w_settled.csv").iloc[0]
    shown = [
        f"epochs {w['from'][0]:g}..{w['from'][1]:g} -> {w['to'][0]:g}..{w['to'][1]:g} at {w['trials']} trials"
        for w in records
    ]
    assert row.ranges_widened == "; ".join(shown) and not row.settled
    assert "Ranges widened on a bound hit: " + html.escape("; ".join(shown)) in out.read_text()


def test_a_study_can_let_named_parameters_widen_without_editing_shared_spaces(tmp_path: Path) -> None:
    """``trials: {expand: [...]}`` marks those parameters of the study's spaces (a space's own limits kept);
    ``all`` every numeric one; an unknown name is one line naming the allowed ones."""
    rule = {"min": 3, "max": 6, "tolerance": 0.01}
    spec = load_study(make_study(tmp_path, trials={**rule, "expand": ["tower_units", "lr"]}))
    spaces = spec.spaces()
    assert spaces["mmoe"].params["tower_units"].expandable()
    assert not spaces["mmoe"].params["n_experts"].expandable()
    assert spec.optimizer_space_loaded().params["lr"].expandable()
    assert (
        spaces["mmoe"].params["tower_units"]
        == spec.from_stored(spec.resolved()).spaces()["mmoe"].params["tower_units"]
    )
    every = load_study(make_study(tmp_path, trials={**rule, "expand": "all"}))
    assert all(r.expandable() for r in every.spaces()["mmoe"].params.values() if r.type != "categorical")
    bad = load_study(make_study(tmp_path, trials={**rule, "expand": ["tower_unit"]}))
    with pytest.raises(ConfigError) as exc:
        check_inputs(bad, None)
    message = str(exc.value)
    assert "trials.expand names tower_unit, not a numeric parameter" in message and "tower_units" in message
    assert "\n" not in message and bad.source in message
