"""The verdict's numbers on small arrays worked out by hand, and its caveats planted."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hpo.report.figures import pairs_frame
from hpo.report.verdict import (
    caveats,
    collapse_caveats,
    collapse_patterns,
    collapsed,
    gate_caveats,
    resolvable_difference,
    smallest_corrected_p,
    task_verdict,
    verdict_html,
    verdicts,
    without_collapsed,
)


def test_resolvable_difference_by_hand() -> None:
    # variance 1 in each of two samples of 4 (values -1, -1, 1, 1 have sample variance 4/3): se = sqrt(2 * (4/3) / 4)
    a = np.array([-1.0, -1.0, 1.0, 1.0])
    z = 1.959964 + 0.841621  # z(0.975) + z(0.8)
    assert resolvable_difference(a, a + 5) == pytest.approx(z * math.sqrt(2 * (4 / 3) / 4), rel=1e-5)


def pairs(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"task": "t", "a": a, "b": b, "holm_p": p} for a, b, p in rows])


def test_best_by_mean_and_the_tied_set_follow_the_pairwise_table() -> None:
    values = {
        "a": np.array([0.90, 0.91, 0.92]),
        "b": np.array([0.89, 0.90, 0.91]),
        "c": np.array([0.5, 0.6, 0.7]),
    }
    v = task_verdict("t", "auc", True, values, pairs([("a", "b", 0.40), ("a", "c", 0.01), ("b", "c", 0.02)]))
    assert v.best == "a" and v.tied == ["b"]
    gaps = {g["architecture"]: g for g in v.gaps}
    assert gaps["b"]["gap"] == pytest.approx(-0.01) and gaps["c"]["gap"] == pytest.approx(-0.31)
    assert gaps["b"]["tied_with_best"] and not gaps["c"]["tied_with_best"]
    assert gaps["c"]["ci_high"] < 0  # c is clearly worse: its whole interval lies below the best
    lower = task_verdict(
        "t", "mse", False, {"x": np.array([2.0, 2.2]), "y": np.array([1.0, 1.1])}, pairs([("x", "y", 0.5)])
    )
    assert lower.best == "y"  # lower is better for a loss


def test_caveats_name_what_was_planted() -> None:
    values = {"t": {"a": np.array([0.95, 0.96, 0.50, 0.97]), "b": np.array([0.94, 0.95, 0.96, 0.95])}}
    v = task_verdict("t", "auc", True, values["t"], pairs([("a", "b", 0.9)]))
    seeds = pd.DataFrame(
        {"architecture": ["a"] * 4 + ["b"] * 4, "seed": list(range(4)) * 2, "status": ["ok"] * 8}
    )
    searched = pd.DataFrame(
        [{"architecture": "a", "complete_trials": 4, "best_on_bound": "n_layers=1 (low)"},
         {"architecture": "b", "complete_trials": 4, "best_on_bound": ""}]
    )  # fmt: skip
    notes = caveats([v], values, seeds, searched)
    text = " | ".join(notes)
    assert "a: 1 collapsed seed on t (test AUC <= 0.55" in text
    assert "a's best configuration sits on a search-space bound (n_layers=1 (low))" in text
    assert "few seeds: 4" in text and "few tuning trials: 4" in text
    assert "t: not enough seeds to resolve a difference of" in text
    html = verdict_html([v], notes, "two-sided Mann-Whitney U", 1)
    assert html.startswith('<section id="verdict">') and "Holm-corrected over 1 tests" in html


def test_a_loss_collapses_relative_to_its_median() -> None:
    n, rule = collapsed(np.array([1.0, 1.1, 0.9, 5.0]), "mse")
    assert n == 1 and "3.0 x its median" in rule
    assert collapsed(np.array([1.0, 1.1, 0.9]), "mse")[0] == 0


def test_a_partial_collapse_is_caught_as_the_seed_probe_catches_it() -> None:
    """On census an MMoE seed reached income AUC 0.843 among seeds at 0.944 +/- 0.0003: above any chance rule,
    yet 300 sds from the rest. The probe's rule (8 Qn scales on the worse side) names it; a healthy spread of 30
    normal seeds, or a seed on the better side, is not named."""
    rng = np.random.default_rng(0)
    healthy = 0.944 + 0.0003 * rng.standard_normal(30)
    n, rule = collapsed(np.append(healthy, 0.843), "auc")
    assert (
        n == 1
        and rule == "test AUC <= 0.55, chance is 0.5, or more than 8 Qn scales below the median of the rest"
    )
    assert collapsed(healthy, "auc")[0] == 0
    assert collapsed(np.append(healthy, 0.99), "auc")[0] == 0  # far off, but on the better side
    assert (
        collapsed(np.append(1 + 0.01 * rng.standard_normal(30), 1.5), "mse")[0] == 1
    )  # under 3x, yet far worse


def test_one_robust_axis_counts_collapsed_seeds_instead_of_stretching() -> None:
    from hpo.report.figures import robust_range

    values = {"sb": np.array([1.6, 1.7, 1.5, 1.8, 1.65]), "mmoe": np.array([2.6, 2.5, 2.7, 2.6, 250.0])}
    lo, hi, outside = robust_range(values, "mse")
    assert outside == {"mmoe": 1}  # the collapsed seed is counted, not drawn
    assert lo < 1.5 and 2.7 < hi < 250.0  # every other seed is on the shared axis


def test_four_seeds_against_a_family_of_ten_cannot_be_separated_whatever_the_data() -> None:
    """Exact Mann-Whitney with 4 v 4 seeds: the smallest two-sided p is 2 / C(8, 4) = 1/35; Holm over 10 tests
    multiplies it by 10, above 0.05: the report says the pair cannot be separated, not that it is tied."""
    assert smallest_corrected_p(4, 4) == pytest.approx(2 / 70)
    assert smallest_corrected_p(4, 4, family=10) == pytest.approx(20 / 70)
    assert smallest_corrected_p(30, 30, family=110) < 0.05
    values = {"a": np.array([0.90, 0.91, 0.92, 0.93]), "b": np.array([0.80, 0.81, 0.82, 0.83])}
    v = task_verdict("t", "auc", True, values, pairs([("a", "b", 0.29)]), family=10)
    (gap,) = v.gaps
    assert gap["tied_with_best"] and not gap["separable"]
    html = verdict_html([v], [], "two-sided Mann-Whitney U", 10)
    assert "cannot be separated with these seeds: the smallest attainable corrected p is 0.29" in html
    assert "(tied)" not in html


def test_the_resolvable_difference_is_taken_at_the_holm_level() -> None:
    rng = np.random.default_rng(0)
    values = {"a": rng.normal(0.9, 0.01, 30), "b": rng.normal(0.9, 0.01, 30)}
    one = task_verdict("t", "auc", True, values, pairs([("a", "b", 0.9)]), family=1)
    many = task_verdict("t", "auc", True, values, pairs([("a", "b", 0.9)]), family=55)
    loser = next(a for a in values if a != one.best)
    assert one.resolvable == pytest.approx(resolvable_difference(values[loser], values[one.best]))
    assert many.resolvable == pytest.approx(
        resolvable_difference(values[loser], values[one.best], alpha=0.05 / 55)
    )
    assert many.resolvable > one.resolvable


def test_gates_that_do_not_mix_are_named_and_mixing_gates_are_not() -> None:
    """One expert (a Shared-Bottom in structure), gates that each settle on one expert, and gates that mix: only
    the first two are caveats, each under its replicate."""

    def use(rows: list[tuple[str, str, float]], replicate: int) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=["gate", "expert", "mean"]).assign(replicate=replicate)

    one = use([("gate:income", "expert0", 1.0), ("gate:marital", "expert0", 1.0)], 1)
    choose = use(
        [
            ("gate:income", "expert0", 0.97),
            ("gate:income", "expert1", 0.03),
            ("gate:marital", "expert0", 0.96),
            ("gate:marital", "expert1", 0.04),
        ],
        2,
    )
    mix = use(
        [
            ("gate:income", "expert0", 0.97),
            ("gate:income", "expert1", 0.03),
            ("gate:marital", "expert0", 0.40),
            ("gate:marital", "expert1", 0.60),
        ],
        3,
    )
    notes = gate_caveats({"mmoe": pd.concat([one, choose, mix], ignore_index=True)})
    assert len(notes) == 2, notes
    assert notes[0].startswith("mmoe (tuning replicate 1): its tuned configuration has one expert")
    assert "Shared-Bottom" in notes[0]
    assert notes[1].startswith("mmoe (tuning replicate 2): every gate puts at least 95% of its weight")
    assert "gate:income: expert0, gate:marital: expert0" in notes[1] and "same expert" in notes[1]
    assert gate_caveats({"mmoe": mix.drop(columns="replicate")}) == []  # one gate mixes: nothing to say


def test_collapsed_seeds_are_left_out_task_by_task() -> None:
    values = {
        "income": {"a": np.array([0.94, 0.5, 0.95]), "b": np.array([0.93, 0.94, 0.92])},
        "marital": {"a": np.array([0.99, 0.98, 0.97]), "b": np.array([0.98, 0.99, 0.97])},
    }
    kept, dropped = without_collapsed(values, {"income": "auc", "marital": "auc"})
    assert dropped == {"income": {"a": (1, 3)}}
    assert kept["income"]["a"].tolist() == [0.94, 0.95]  # seed 1 collapsed on income
    assert kept["marital"]["a"].tolist() == [0.99, 0.98, 0.97]  # and stays where it learnt


def _verdicts_with_and_without(values: dict[str, np.ndarray]) -> list[str]:
    by_task, metrics = {"income": values}, {"income": "auc"}
    found = verdicts(by_task, metrics, pairs_frame(by_task, metrics))
    kept, dropped = without_collapsed(by_task, metrics)
    return collapse_caveats(found, verdicts(kept, metrics, pairs_frame(kept, metrics)), dropped)


def test_a_verdict_decided_by_collapses_says_so() -> None:
    rng = np.random.default_rng(0)
    # b beats a on every seed that trained, but 6 of its 30 seeds collapsed: a is best by mean with them in
    a = 0.940 + 0.001 * rng.standard_normal(30)
    b = 0.945 + 0.001 * rng.standard_normal(30)
    b[:6] = 0.5
    (note,) = _verdicts_with_and_without({"a": a, "b": b})
    assert note.startswith(
        "income with its collapsed seeds left out (b 6 of 30): the verdict changes, to best b"
    )
    assert "(was a); not distinguishable from it: none; gaps to it: a -0.00" in note


def test_a_verdict_that_survives_its_collapses_says_so() -> None:
    rng = np.random.default_rng(1)
    a = 0.950 + 0.001 * rng.standard_normal(30)
    b = 0.940 + 0.001 * rng.standard_normal(30)
    b[:2] = 0.5  # b loses with or without its two collapsed seeds
    assert _verdicts_with_and_without({"a": a, "b": b}) == [
        "income with its collapsed seeds left out (b 2 of 30): the verdict stands (best a; not distinguishable "
        "from it: none)"
    ]
    assert _verdicts_with_and_without({"a": a, "b": b[2:]}) == []  # nothing collapsed: nothing to say


def crossed(
    collapsed_at: set[tuple[int, int]], inits: int = 3, orders: int = 4, seed: int = 0
) -> pd.DataFrame:
    """A crossed retraining's seed frame: healthy seeds near 0.944, those at (init, data order) in
    ``collapsed_at`` at 0.5 (a constant output)."""
    rng = np.random.default_rng(seed)
    rows = [
        {"architecture": "sb", "init_seed": i, "data_seed": 7919 + d,
         "value": 0.5 if (i, d) in collapsed_at else 0.944 + 0.0003 * rng.standard_normal()}
        for i in range(inits) for d in range(orders)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_collapses_that_follow_the_initialisation_are_told_apart_from_the_data_order() -> None:
    """On census, replicate 2's Shared-Bottom collapsed for every data order of 4 of its 6 initialisations: the
    configuration trains only from some starting weights. The report says which factor a collapse follows."""
    (init,) = collapse_patterns(crossed({(1, d) for d in range(4)}), "income", "auc")
    assert init.startswith(
        "sb on income: the collapses follow the initialisation: 1 of 3 initialisations (seed 1)"
    )
    assert "collapsed under every data order trained so far, the others under none" in init
    assert "trains from some starting weights" in init
    assert init.endswith("; retrain.select chooses the configuration by its mean over several seeds)")
    (chosen,) = collapse_patterns(crossed({(1, d) for d in range(4)}), "income", "auc", selected=True)
    assert chosen.endswith(
        "and the probe of retrain.select trained it from too few to see it)"
    )  # it was used
    (order,) = collapse_patterns(crossed({(i, 2) for i in range(3)}), "income", "auc")
    assert "follow the data order: 1 of 4 data orders (seed 7921)" in order
    assert "starting weights" not in order
    (spread,) = collapse_patterns(crossed({(0, 0), (1, 1)}), "income", "auc")
    assert spread == (
        "sb on income: the 2 collapses are spread over 2 initialisations and 2 data orders, following neither"
    )
    # one collapsed seed shows no pattern; nor does a design that is not crossed, nor a run without collapses
    assert collapse_patterns(crossed({(0, 0)}), "income", "auc") == []
    assert collapse_patterns(crossed({(0, 0), (0, 1)}, inits=1), "income", "auc") == []
    assert collapse_patterns(crossed(set()), "income", "auc") == []


def test_collapse_patterns_are_told_per_tuning_replicate() -> None:
    """Replicates tuned different configurations: one's collapse pattern is its own, and says which it is."""
    frame = pd.concat(
        [crossed(set()).assign(replicate=1), crossed({(2, d) for d in range(4)}, seed=1).assign(replicate=2)]
    )
    (text,) = collapse_patterns(frame, "income", "auc")
    assert text.startswith("sb (replicate 2) on income: the collapses follow the initialisation: 1 of 3")


def test_a_progress_report_shows_the_caveats_so_far() -> None:
    pending = verdict_html(
        [], ["sb on income: the collapses follow the initialisation"], "t", 1, pending="wait"
    )
    assert "wait" in pending and "Caveats so far (provisional)" in pending
    assert "the collapses follow the initialisation" in pending
    assert "Caveats so far" not in verdict_html([], [], "t", 1, pending="wait")


def test_bound_caveats_follow_the_configuration_the_probe_retrained() -> None:
    """A verdict compares the retrained configuration: where a seed probe chose another trial than the best, its
    bound hits are the range's choice, and the best trial's only say that a wider range may hold better."""
    from hpo.report.verdict import _bound_caveats

    nan = float("nan")
    searched = pd.DataFrame(
        [{"architecture": "a", "replicate": 1, "best_on_bound": "n_experts=23 (high bound)",
          "retrained_trial": 16.0, "retrained_on_bound": nan},
         {"architecture": "b", "replicate": 1, "best_on_bound": nan,
          "retrained_trial": 12.0, "retrained_on_bound": "n_layers=3 (high)"},
         {"architecture": "c", "replicate": 2, "best_on_bound": "lr=0.01 (high)",
          "retrained_trial": nan, "retrained_on_bound": nan},
         {"architecture": "d", "replicate": 1, "best_on_bound": "", "retrained_trial": 3.0,
          "retrained_on_bound": "epochs=44 (high)"}]
    )  # fmt: skip
    notes = _bound_caveats(searched)
    assert notes == [
        "a's best tuning trial (tuning replicate 1) sits on a search-space bound (n_experts=23 (high bound)): a "
        "wider range may hold a better configuration; the seed probe retrained trial 16 instead, on no bound",
        "b's retrained configuration (tuning replicate 1; trial 12, chosen by the seed probe) sits on a "
        "search-space bound (n_layers=3 (high)): the range, not the tuner, chose it",
        "c's best configuration (tuning replicate 2) sits on a search-space bound (lr=0.01 (high)): the range, not "
        "the tuner, chose it",
        "d's retrained configuration (tuning replicate 1; trial 3, chosen by the seed probe) sits on a "
        "search-space bound (epochs=44 (high)): the range, not the tuner, chose it",
    ]
