"""Small arrays whose answers can be worked out by hand (rliable's testing style)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from hpo.report.stats import (
    PairComparison,
    bootstrap_ci,
    compare_pairs,
    holm,
    holm_over,
    iqm,
    probability_of_improvement,
    sign_test,
    summarise,
)


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert iqm(np.array([0, 1, 2, 3, 4, 5, 6, 100.0])) == pytest.approx(np.mean([2, 3, 4, 5]))


def test_probability_of_improvement_by_hand() -> None:
    a, b = np.array([1.0, 3.0]), np.array([2.0, 2.0])
    assert probability_of_improvement(a, b) == 0.5  # 3 > 2 twice, 1 < 2 twice
    assert probability_of_improvement(np.array([2.0]), np.array([2.0])) == 0.5  # a tie counts half
    assert probability_of_improvement(np.array([1.0]), np.array([2.0]), higher_is_better=False) == 1.0


def test_holm_by_hand() -> None:
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04, monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_bootstrap_interval_is_reproducible_and_covers_the_mean() -> None:
    x = np.random.default_rng(1).normal(0.9, 0.01, 40)
    lo, hi = bootstrap_ci(x, seed=3)
    assert (lo, hi) == bootstrap_ci(x, seed=3)
    assert lo < x.mean() < hi and hi - lo < 0.01


def test_summary_ignores_non_finite_seeds() -> None:
    s = summarise([0.9, 0.92, float("nan"), 0.91])
    assert s.n == 3 and s.mean == pytest.approx(0.91) and s.median == pytest.approx(0.91)


def test_compare_pairs_detects_a_clear_winner_and_corrects_for_many_pairs() -> None:
    rng = np.random.default_rng(0)
    samples = {
        "good": rng.normal(0.95, 0.005, 30),
        "bad": rng.normal(0.90, 0.005, 30),
        "bad2": rng.normal(0.90, 0.005, 30),
    }
    rows = {(r.a, r.b): r for r in compare_pairs(samples, n_resamples=300)}
    win = rows[("good", "bad")]
    assert win.p_a_beats_b == 1.0 and win.significant and win.p_holm >= win.p_value
    tie = rows[("bad", "bad2")]
    assert 0.2 < tie.p_a_beats_b < 0.8 and not tie.significant
    assert tie.ci_low < tie.p_a_beats_b < tie.ci_high


def test_paired_comparison_sees_what_dataset_variance_hides() -> None:
    """Runs share their data: a small, consistent gap under a large run-to-run spread is found only when paired."""
    rng = np.random.default_rng(0)
    base = rng.lognormal(0.0, 1.0, 40)  # dataset difficulty varies a lot between runs
    a, b = base * 0.95, base  # A is 5% better on every dataset
    (unpaired,) = compare_pairs({"a": a, "b": b}, higher_is_better=False)
    (paired,) = compare_pairs({"a": a, "b": b}, higher_is_better=False, paired=True)
    assert not unpaired.significant and 0.4 < unpaired.p_a_beats_b < 0.65
    assert paired.significant and paired.p_a_beats_b == 1.0 and paired.ci_low == 1.0
    assert paired.p_value < 1e-6
    with pytest.raises(ValueError, match="differ in length"):
        compare_pairs({"a": a, "b": b[:10]}, paired=True)


def test_sign_test_by_hand() -> None:
    # 8 wins in 10: two-sided binomial p = 2 * (C(10,8) + C(10,9) + C(10,10)) / 2^10 = 2 * 56 / 1024
    d = np.array([1.0] * 8 + [-1.0] * 2)
    assert sign_test(d) == pytest.approx(112 / 1024)
    assert sign_test(np.array([1.0] * 8 + [-1.0] * 2 + [0.0] * 5)) == pytest.approx(
        112 / 1024
    )  # ties dropped
    assert sign_test(np.zeros(4)) == 1.0


def test_paired_win_share_is_tested_with_the_sign_test() -> None:
    """The issue's case: A wins 8 of 10 runs. The share is 0.8 and its test is the sign test (p = 0.109), not
    Wilcoxon's signed-rank test of a median difference (which gives another answer on the same data)."""
    b = np.arange(10, dtype=float)
    a = b + np.array([1, 1, 1, 1, 1, 1, 1, 1, -5, -5], dtype=float)
    (row,) = compare_pairs({"a": a, "b": b}, paired=True, n_resamples=500)
    assert row.test == "sign test" and row.p_a_beats_b == 0.8
    assert row.p_value == pytest.approx(112 / 1024)
    assert row.p_value != pytest.approx(float(sps.wilcoxon(a, b).pvalue))


def test_bootstrap_level_is_passed_through() -> None:
    x = np.random.default_rng(2).normal(0.0, 1.0, 30)
    wide, narrow = bootstrap_ci(x, level=0.95), bootstrap_ci(x, level=0.5)
    assert wide[0] < narrow[0] < x.mean() < narrow[1] < wide[1]
    scipy = sps.bootstrap(
        (x,),
        np.mean,
        confidence_level=0.8,
        n_resamples=2000,
        method="BCa",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    assert bootstrap_ci(x, level=0.8) == pytest.approx((scipy.low, scipy.high))  # BCa, as stated
    assert bootstrap_ci(np.full(5, 0.7)) == (0.7, 0.7)  # constant data: the point itself
    (row,) = compare_pairs({"a": x + 1, "b": x}, level=0.5, n_resamples=400)
    (row95,) = compare_pairs({"a": x + 1, "b": x}, level=0.95, n_resamples=400)
    assert row95.ci_low <= row.ci_low <= row.ci_high <= row95.ci_high


def test_one_correction_family_over_tasks_by_hand() -> None:
    """Two tasks with one pair each, raw p 0.02 and 0.04: corrected per task they stay 0.02 and 0.04; as the one
    family the report states (every pair and task), Holm gives 0.04 and 0.04 (0.02 x 2; then max(0.04, 0.04))."""
    rows = [PairComparison("a", "b", 0.7, 0.5, 0.9, p, p, p < 0.05) for p in (0.02, 0.04)]
    fixed = holm_over(rows)
    assert [r.p_holm for r in fixed] == pytest.approx([0.04, 0.04]) and all(r.family == 2 for r in fixed)


def test_nemenyi_critical_difference_matches_demsar() -> None:
    """Demsar (JMLR 2006), section 3.2.4: four algorithms on 14 data sets, q_0.05 = 2.569, CD = 1.25."""
    from hpo.report.stats import nemenyi_cd

    assert nemenyi_cd(4, 14) == pytest.approx(2.569 * (4 * 5 / (6 * 14)) ** 0.5, abs=2e-3)
    assert nemenyi_cd(4, 14) == pytest.approx(1.25, abs=5e-3)


def test_rank_summary_by_hand() -> None:
    """Three blocks, three methods, higher is better: ranks [1,2,3], [1,2,3], [1,3,2]; mean ranks 1, 7/3, 8/3;
    Friedman chi2 = 12 n / (k (k+1)) * (sum R^2 - k (k+1)^2 / 4) = 3 * (1 + 49/9 + 64/9 - 12) = 14/3."""
    from scipy import stats as sps

    from hpo.report.stats import rank_summary

    scores = np.array([[3.0, 2.0, 1.0], [0.9, 0.5, 0.1], [7.0, 1.0, 2.0]])
    s = rank_summary(scores, ["a", "b", "c"], True)
    assert s.mean_ranks == pytest.approx((1.0, 7 / 3, 8 / 3))
    assert s.friedman_statistic == pytest.approx(14 / 3)
    assert s.friedman_p == pytest.approx(np.exp(-7 / 3))  # chi-square with 2 degrees of freedom
    assert s.friedman_statistic == pytest.approx(sps.friedmanchisquare(*scores.T).statistic)
    assert s.groups() == [("a", "b", "c")]  # CD(3, 3) = 1.91 > 8/3 - 1
    lower = rank_summary(-scores, ["a", "b", "c"], False)  # the same order when lower is better
    assert lower.mean_ranks == s.mean_ranks


def test_rank_groups_split_where_the_critical_difference_is_exceeded() -> None:
    from hpo.report.stats import RankSummary

    s = RankSummary(("a", "b", "c", "d"), (1.0, 1.5, 2.9, 3.2), 50, 0.0, 1.0, 1.0, 0.05)
    assert s.groups() == [("a", "b"), ("c", "d")]


def test_resampled_probabilities_equal_the_pairwise_count_on_each_resample() -> None:
    from hpo.report.stats import probability_of_improvement, resampled_probabilities

    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 6, 9).astype(float), rng.integers(0, 6, 13).astype(float)  # many ties
    ix, iy = rng.integers(0, 9, (50, 9)), rng.integers(0, 13, (50, 13))
    for higher in (True, False):
        fast = resampled_probabilities(x, y, ix, iy, higher_is_better=higher)
        slow = [
            probability_of_improvement(x[i], y[j], higher_is_better=higher)
            for i, j in zip(ix, iy, strict=True)
        ]
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
