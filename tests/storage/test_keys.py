"""Attribute names: written namespaced, read plain, legacy names of older databases still read."""

from __future__ import annotations

import optuna

from hpo.report.collect import trials_frame
from hpo.storage import keys


def test_plain_view_prefers_the_namespaced_name_and_reads_legacy_ones() -> None:
    assert keys.tag({"ticket": 3}) == {"hpo.ticket": 3}
    assert keys.plain({"hpo.ticket": 3, "ticket": 9, "wall_time": 1.5}) == {"ticket": 3, "wall_time": 1.5}


def test_a_trial_written_before_the_namespace_reads_the_same() -> None:
    legacy = {"ticket": 0, "parameter_count": 7, "units_per_layer": [4, 2], "wall_time": 1.0}
    study = optuna.create_study()
    for attrs in (legacy, keys.tag(legacy)):
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs))
    frame = trials_frame(study, "mmoe")
    assert frame.ticket.tolist() == [0, 0] and frame.parameter_count.tolist() == [7, 7]
    assert frame.units_per_layer.tolist() == ["4/2", "4/2"]
