"""Summaries across tasks, worked out by hand: the Pareto front and the rank blocks."""

from __future__ import annotations

from hpo.report.across import pareto_front


def test_pareto_front_by_hand() -> None:
    # task 1 AUC (higher is better), task 2 MSE (lower is better)
    points = {"a": (0.90, 0.30), "b": (0.85, 0.20), "c": (0.84, 0.25), "d": (0.90, 0.35), "e": (0.80, 0.20)}
    # c: b is better on both; d: a ties on AUC and is better on MSE; e: b ties on MSE and is better on AUC
    assert pareto_front(points, (True, False)) == ["a", "b"]
    assert pareto_front(points, (True, True)) == ["d"]  # both higher-is-better: d is at least as good as all
    assert pareto_front({"x": (1.0, 1.0), "y": (1.0, 1.0)}, (True, True)) == [
        "x",
        "y",
    ]  # equal points: both on it
