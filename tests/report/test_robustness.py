"""Show your work: replicated tuning, crossed and default retrains, and the report sections built on them."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest

from hpo.cli import main
from hpo.config.study import load_study
from hpo.errors import ConfigError
from hpo.report.collect import ReportData
from hpo.report.expected_max import crossings
from hpo.report.robustness import _default_html, expected_max_frame
from hpo.storage import keys
from hpo.storage.engine import open_storage
from hpo.storage.results import read_seed_results
from tests.browser import dump_dom
from tests.search.conftest import make_study


def _first_k_where_b_wins(mean_a: np.ndarray, mean_b: np.ndarray) -> int:
    return int(np.argmax(mean_b > mean_a)) + 1


def test_planted_ranking_flip_crosses_where_brute_force_says() -> None:
    """Two planted architectures: A's trials are consistently good, B's mostly worse with a few better ones, so A
    looks better with few trials and B with many. The report's expected-max curves must cross where drawing k of
    the very same trials at random says (exact up to Monte-Carlo error), and near where fresh draws from the
    generating distributions say."""
    rng = np.random.default_rng(7)
    n = 60

    def draw_a(size: int | tuple[int, ...]) -> np.ndarray:
        return rng.normal(0.800, 0.004, size)

    def draw_b(size: int | tuple[int, ...]) -> np.ndarray:
        good = rng.random(size) < 0.15
        return np.where(good, rng.normal(0.830, 0.004, size), rng.normal(0.760, 0.010, size))

    trials_a, trials_b = draw_a(n), draw_b(n)
    frame = pd.DataFrame(
        [
            {"architecture": arch, "number": i, "state": "COMPLETE", "value_0": v, "replicate": 1 + i // 20}
            for arch, values in (("shared_bottom", trials_a), ("mmoe", trials_b))
            for i, v in enumerate(values)
        ]
    )
    spec = load_study(Path(__file__).resolve().parents[2] / "studies" / "smoke.yaml")  # shared_bottom, mmoe
    spec = spec.model_copy(update={"sampler": spec.sampler.model_copy(update={"name": "random"})})
    data = ReportData(spec, "", frame, pd.DataFrame(), pd.DataFrame(), {}, {}, directions=["maximize"])
    em = expected_max_frame(data)
    curves = {
        a: g.sort_values("trials").expected_best.to_numpy() for a, g in em.groupby("architecture", sort=False)
    }
    found = crossings(curves)
    assert len(found) == 1 and found[0].before == "shared_bottom" and found[0].after == "mmoe"
    k_report = found[0].k
    # brute force on the same trials: the mean best of k drawn without replacement, 4000 draws per k
    ks = np.arange(1, n + 1)
    sims = 4000
    bf_a = np.array(
        [np.mean([rng.choice(trials_a, k, replace=False).max() for _ in range(sims)]) for k in ks]
    )
    bf_b = np.array(
        [np.mean([rng.choice(trials_b, k, replace=False).max() for _ in range(sims)]) for k in ks]
    )
    np.testing.assert_allclose(curves["shared_bottom"], bf_a, atol=6e-4)
    np.testing.assert_allclose(curves["mmoe"], bf_b, atol=1.5e-3)
    assert abs(_first_k_where_b_wins(bf_a, bf_b) - k_report) <= 1
    # the generating distributions (fresh trials): the crossing of the truth, within two trials
    truth_a = np.array([draw_a((sims, k)).max(axis=1).mean() for k in ks])
    truth_b = np.array([draw_b((sims, k)).max(axis=1).mean() for k in ks])
    assert abs(_first_k_where_b_wins(truth_a, truth_b) - k_report) <= 2
    # the observed best-so-far: three replicates of 20 trials each reach k = 20
    assert set(em.loc[em.trials == 20, "replicates_reaching_k"]) == {3}
    assert (em.loc[em.trials == 21, "replicates_reaching_k"] == 0).all()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_replicates_crossed_and_default_retrains_end_to_end(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """On the synthetic generator: two tuning replicates, a 2 x 3 crossed retrain and the default configurations,
    through run, retrain, report and export, on SQLite and on PostgreSQL."""
    path = make_study(
        tmp_path,
        replicates=2,
        sampler={"name": "random", "seed": 0},
        trials=4,
        retrain={"cross": {"init": 2, "data": 3}, "default": True},
    )
    url = (
        f"sqlite:///{tmp_path / 'r.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    spec = load_study(path)
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    names = {s.study_name for s in open_storage(url, heartbeat=False).get_all_studies()}
    assert {f"{spec.name}.rep{r}/{a}" for r in (1, 2) for a in ("shared_bottom", "mmoe")} <= names
    storage = open_storage(url, heartbeat=False)
    params = [
        [t.params for t in optuna.load_study(study_name=f"{spec.name}.rep{r}/mmoe", storage=storage).trials]
        for r in (1, 2)
    ]
    assert params[0] != params[1]  # different sampler seeds, not a copy
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    for name in (f"{spec.name}.rep1", f"{spec.name}.rep2", f"{spec.name}.default"):
        res = read_seed_results(url, name)
        assert len(res) == 12, name  # 2 architectures x 6 cells
        cells = res.groupby("architecture")[["init_seed", "data_seed"]].apply(
            lambda f: sorted(map(tuple, f.to_numpy().tolist()))
        )
        expected = sorted((i, 7919 + d) for i in range(2) for d in range(3))
        assert all(c == expected for c in cells), cells
    default = read_seed_results(url, f"{spec.name}.default")
    assert set(default.tuning_trial) == {-1}
    out = tmp_path / "rep" / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    html = out.read_text()
    for section in ("expected-max", "replicates", "variance", "default-vs-tuned", "verdict"):
        assert f'<section id="{section}">' in html
    assert (
        "2 tuning replicates&#x27; retrains pooled" in html or "2 tuning replicates' retrains pooled" in html
    )
    comp = pd.read_csv(tmp_path / "rep" / "r_comparison.csv")
    assert (comp.seeds == 12).all()  # 6 cells x 2 replicates, pooled
    # each replicate's gates are read from its own retrained configuration, side by side, never averaged
    assert "replicate 1: gate:" in html and "replicate 2: gate:" in html
    trials_caveat = "complete tuning trials per architecture and tuning replicate (2 replicates): 4"
    assert trials_caveat in html and f"{trials_caveat} to" not in html
    var = pd.read_csv(tmp_path / "rep" / "r_variance.csv")
    assert set(var.design) == {"2 init x 3 data order, 2 replicates"}
    assert {"sd_init", "sd_data_order", "sd_residual", "sd_tuning"} <= set(var.columns)
    assert set(var.method) == {"replicated crossed"}  # the estimator built for replicates on one seed grid
    for c in ("init", "data_order", "residual", "tuning"):
        assert (var[f"sd_{c}_ci95_low"] <= var[f"sd_{c}"] + 1e-12).all(), c
        assert (var[f"sd_{c}"] <= var[f"sd_{c}_ci95_high"] + 1e-12).all(), c
    shares = var[[c for c in var.columns if c.startswith("share_")]].sum(axis=1)
    assert np.allclose(shares[shares > 0], 1.0)
    reps = pd.read_csv(tmp_path / "rep" / "r_replicates.csv")
    assert sorted(map(tuple, reps[["architecture", "replicate"]].to_numpy().tolist())) == [
        ("mmoe", 1), ("mmoe", 2), ("shared_bottom", 1), ("shared_bottom", 2)
    ]  # fmt: skip
    assert reps.valid_at_selection.notna().all() and reps.retrained_test_mean.notna().all()
    dvt = pd.read_csv(tmp_path / "rep" / "r_default_vs_tuned.csv")
    assert len(dvt) == 4 and (dvt.default_seeds == 6).all() and (dvt.tuned_seeds == 12).all()
    assert (dvt.gain_ci95_low <= dvt.gain).all() and (dvt.gain <= dvt.gain_ci95_high).all()
    assert dvt.default_configuration.str.contains("lr=").all()
    em = pd.read_csv(tmp_path / "rep" / "r_expected_max.csv")
    assert set(em.groupby("architecture").trials.max()) == {8}  # 2 replicates x 4 trials pooled
    section = html[html.index('<section id="expected-max">') :]
    assert "random sampler draws trials independently" in section[: section.index("</section>")]
    assert main(["export", str(path), "--storage", url, "--out", str(tmp_path / "x")]) == 0
    exported = {p.name for p in (tmp_path / "x").iterdir()}
    assert f"{spec.name}.rep2_seed_metrics.csv" in exported
    assert len(pd.read_csv(tmp_path / "x" / f"{spec.name}.default_seed_results.csv")) == 12
    # replicates, crossed cells and default seeds all come back from the exported folder: the same tables
    again = tmp_path / "again" / "r.html"
    assert main(["report", str(path), "--from-tables", str(tmp_path / "x"), "--out", str(again)]) == 0
    for table in (
        "comparison",
        "pairs",
        "verdict",
        "replicates",
        "variance",
        "default_vs_tuned",
        "expected_max",
    ):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "rep" / f"r_{table}.csv"),
            pd.read_csv(again.parent / f"r_{table}.csv"),
            check_exact=True,
            obj=table,
        )
    assert re.search(r"Tuning improved \d+ of 4 architecture-task results", html)


def test_bad_replicate_and_cross_settings_are_one_line_errors(tmp_path: Path) -> None:
    for overrides, words in (
        ({"replicates": 0}, "replicates"),
        (
            {"retrain": {"seeds": 5, "cross": {"init": 2, "data": 3}}},
            "must equal cross.init x cross.data x cross.splits (6)",
        ),
        ({"retrain": {"cross": {"init": 1, "data": 3}}}, "init"),
        (
            {"replicates": 2, "sweep": {"key": "p", "values": [0.5, 1.0]}},
            "give each sweep value its own study",
        ),
    ):
        path = make_study(tmp_path, **overrides)
        with pytest.raises(ConfigError) as exc:
            load_study(path)
        assert words in str(exc.value) and "\n" not in str(exc.value) and path.name in str(exc.value)


def test_replicates_per_architecture_tune_the_pair_more_often(tmp_path: Path) -> None:
    """replicates: 2 with Shared-Bottom at 1: Shared-Bottom is tuned and retrained once, MMoE twice; the report
    pools what exists, and the tolerance family stays the whole study's; more than the study's is one line."""
    path = make_study(
        tmp_path,
        replicates=2,
        architectures=[{"name": "shared_bottom", "replicates": 1}, "mmoe"],
        sampler={"name": "random", "seed": 0},
        trials=3,
        retrain={"seeds": 3},
    )
    spec = load_study(path)
    reps = spec.expand()
    assert [[a.name for a in r.architectures] for r in reps] == [["shared_bottom", "mmoe"], ["mmoe"]]
    assert [r.family for r in reps] == [2, 2]
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    names = {s.study_name for s in open_storage(url, heartbeat=False).get_all_studies()}
    assert f"{spec.name}.rep2/shared_bottom" not in names and f"{spec.name}.rep2/mmoe" in names
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    out = tmp_path / "rep" / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    comp = pd.read_csv(tmp_path / "rep" / "r_comparison.csv")
    assert dict(comp.groupby("architecture").seeds.max()) == {"mmoe": 6, "shared_bottom": 3}
    got = pd.read_csv(tmp_path / "rep" / "r_replicates.csv")
    assert sorted(map(tuple, got[["architecture", "replicate"]].to_numpy().tolist())) == [
        ("mmoe", 1), ("mmoe", 2), ("shared_bottom", 1)
    ]  # fmt: skip
    settled = pd.read_csv(tmp_path / "rep" / "r_settled.csv")  # one row per tuning run, in the study's order
    assert list(zip(settled.architecture, settled.replicate, strict=True)) == [
        ("shared_bottom", 1), ("mmoe", 1), ("mmoe", 2)
    ]  # fmt: skip
    assert (settled.trials == 3).all()
    assert "mmoe (replicate 2)" in out.read_text()
    bad = make_study(tmp_path, replicates=2, architectures=[{"name": "mmoe", "replicates": 3}])
    with pytest.raises(ConfigError) as exc:
        load_study(bad)
    assert "exceed the study's replicates (2): mmoe (3)" in str(exc.value) and "\n" not in str(exc.value)


def test_crossed_retrain_with_redrawn_heldout_splits(tmp_path: Path) -> None:
    """cross.splits: the held-out rows are drawn again per split block; chunks never span two blocks, and the
    variance section gains a held-out split component."""
    path = make_study(
        tmp_path,
        trials=2,
        architectures=["shared_bottom"],
        retrain={"cross": {"init": 2, "data": 2, "splits": 2}, "replicas_per_run": 3},
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    spec = load_study(path)
    assert spec.retrain.seeds == 8
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    study = optuna.load_study(study_name=f"{spec.name}/shared_bottom/retrain", storage=url)
    chunks = sorted(
        (keys.plain(t.user_attrs)["seeds"], keys.plain(t.user_attrs)["heldout_split"]) for t in study.trials
    )
    assert chunks == [([0, 1, 2], 0), ([3], 0), ([4, 5, 6], 1), ([7], 1)]
    res = read_seed_results(url, spec.name).sort_values("seed")
    assert res.init_seed.tolist() == [0, 0, 1, 1] * 2 and res.data_seed.tolist() == [7919, 7920] * 4
    out = tmp_path / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    var = pd.read_csv(tmp_path / "r_variance.csv")
    assert set(var.design) == {"2 heldout split x 2 init x 2 data order"}
    assert {"sd_heldout_split", "sd_init", "sd_data_order", "sd_residual"} <= set(var.columns)
    assert "held-out split is one random division" in out.read_text()


def test_validate_names_the_design_and_refuses_a_default_over_the_budget(tmp_path: Path) -> None:
    from hpo.search.validate import validate_file

    path = make_study(
        tmp_path, replicates=3, retrain={"cross": {"init": 2, "data": 2, "splits": 2}, "default": True}
    )
    head = validate_file(path, samples=5)[0]
    assert "3 tuning replicates" in head and "2 init x 2 data order x 2 held-out splits = 8 seeds" in head
    assert ".default" in head
    small = make_study(tmp_path, budget=8, retrain={"default": True})
    with pytest.raises(ConfigError, match=r"retrain.default: shared_bottom's default configuration"):
        validate_file(small, samples=5)


def test_export_partial_leaves_out_replicates_not_yet_run(tmp_path: Path) -> None:
    """A long replicated run exported before it ends: the plain export refuses in one line and says how; with
    --partial the existing replicate is written and the missing ones are named."""
    path = make_study(tmp_path, replicates=2, sampler={"name": "random", "seed": 0}, trials=2)
    spec = load_study(path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    for arch in ("shared_bottom", "mmoe"):  # as if replicate 2 had not started yet
        optuna.delete_study(study_name=f"{spec.name}.rep2/{arch}", storage=url)
    with pytest.raises(ConfigError, match="--partial"):
        from hpo.report.collect import export

        export(spec, url, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert main(["export", str(path), "--storage", url, "--out", str(tmp_path / "y"), "--partial"]) == 0
    names = {p.name for p in (tmp_path / "y").iterdir()}
    assert f"{spec.name}.rep1_trials.csv" in names and not any(".rep2_" in n for n in names)


@pytest.mark.browser
def test_a_progress_report_of_a_replicated_study_still_tuning(tmp_path: Path) -> None:
    """Before any retraining, and with replicate 2 not started: the plain report refuses in one line and names
    --partial; with --partial the page says no verdict yet and why, #settled names every architecture-replicate
    not started, and the same page comes back from a partial export. With every replicate tuned and nothing
    retrained, the plain report is a progress report too (it once failed on the empty pooled seed tables)."""
    path = make_study(tmp_path, replicates=2, sampler={"name": "random", "seed": 0}, trials=2)
    spec = load_study(path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    whole = tmp_path / "whole" / "w.html"
    assert main(["report", str(path), "--storage", url, "--out", str(whole)]) == 0
    assert "no seed retrained yet: a progress report" in whole.read_text()
    assert "No verdict yet: no seed has been retrained" in whole.read_text()
    for arch in ("shared_bottom", "mmoe"):  # as if replicate 2 had not started yet
        optuna.delete_study(study_name=f"{spec.name}.rep2/{arch}", storage=url)
    with pytest.raises(ConfigError, match="--partial") as exc:
        from hpo.report.html import write_report

        write_report(spec, tmp_path / "x" / "x.html", url)
    assert "\n" not in str(exc.value) and f"{spec.name}.rep2/shared_bottom" in str(exc.value)
    out = tmp_path / "rep" / "p.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out), "--partial"]) == 0
    page = out.read_text()
    assert "mmoe (replicate 2)</b>: Not started: no tuning trial yet." in page
    dom = dump_dom(out.as_uri(), budget_ms=20000)  # the page as a reader sees it: every plot drawn, no error
    body = dict(re.findall(r'(data-[a-z-]+)="(\d+)"', re.search(r"<body[^>]*>", dom).group(0)))  # type: ignore[union-attr]
    assert body["data-js-errors"] == "0" and body["data-rendered-plots"] == body["data-expected-plots"]
    assert dom.index('id="verdict"') < dom.index('id="settled"') and "No verdict yet" in dom
    settled = pd.read_csv(tmp_path / "rep" / "p_settled.csv")
    assert list(zip(settled.architecture, settled.replicate, settled.stop_reason, strict=True)) == [
        ("shared_bottom", 1, "fixed budget"), ("mmoe", 1, "fixed budget"),
        ("shared_bottom", 2, "not started"), ("mmoe", 2, "not started"),
    ]  # fmt: skip
    assert list(settled.trials) == [2, 2, 0, 0]
    assert main(["export", str(path), "--storage", url, "--out", str(tmp_path / "y"), "--partial"]) == 0
    again = tmp_path / "again" / "p.html"
    tables = ["report", str(path), "--from-tables", str(tmp_path / "y"), "--out", str(again)]
    assert main(tables) == 2  # a replicate's tables are missing: refused, not reported as finished
    assert main([*tables, "--partial"]) == 0
    back = pd.read_csv(tmp_path / "again" / "p_settled.csv")
    pd.testing.assert_frame_equal(back[["architecture", "replicate", "stop_reason", "trials"]],
                                  settled[["architecture", "replicate", "stop_reason", "trials"]])  # fmt: skip


def test_the_verdict_of_a_progress_report_says_how_far_tuning_has_come() -> None:
    from hpo.report.settled import tuning_progress

    frame = pd.DataFrame(
        {
            "architecture": ["shared_bottom", "mmoe", "shared_bottom", "mmoe"],
            "replicate": [1, 1, 2, 2],
            "stop_reason": ["settled", "running or not judged", "max", "not started"],
        }
    )
    said = tuning_progress(frame)
    assert said.startswith("No verdict yet: no seed has been retrained.")
    assert "2 of 4 architecture-replicates have stopped tuning (1 settled, 1 max)" in said
    assert "still tuning: mmoe (replicate 1); not started: mmoe (replicate 2)" in said
    assert "Once every one has stopped, hpo retrain trains" in said
    done = tuning_progress(frame.assign(stop_reason=["settled", "max", "max", "timeout"]))
    assert "4 of 4 architecture-replicates have stopped tuning (2 max, 1 settled, 1 timeout)" in done
    assert "Next, hpo retrain trains" in done


def test_a_report_while_the_defaults_retrain_marks_their_gain_provisional() -> None:
    """The default configurations retrain last: until each has every seed, the section says how far they have
    come, and says nothing of the kind once they have."""
    data = SimpleNamespace(spec=SimpleNamespace(retrain=SimpleNamespace(default=True, seeds=30)))
    frame = pd.DataFrame(
        {
            "architecture": ["mmoe", "mmoe", "ple"],
            "default_seeds": [7, 7, 30],
            "gain_ci95_low": [0.001, 0.001, -0.002],
            "gain_ci95_high": [0.003, 0.003, 0.001],
        }
    )
    html = _default_html(frame, data, lambda f: "")  # type: ignore[arg-type]
    assert "the default configurations' retraining is in progress (seeds so far of 30: mmoe 7)" in html
    done = frame.assign(default_seeds=30)
    assert "in progress" not in _default_html(done, data, lambda f: "")  # type: ignore[arg-type]
