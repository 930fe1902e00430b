"""The paper's synthetic experiments as sweep studies: grid tickets, fresh data per run, and the sweep report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from hpo.cli import main
from hpo.config.study import StudySpec, load_study
from hpo.errors import ConfigError
from hpo.search.retrain import dataset_seed_of, retrain_study_name
from hpo.storage import keys
from hpo.storage.engine import open_storage
from hpo.storage.results import read_seed_curves, read_seed_metrics, read_seed_results
from tests.browser import dump_dom, screenshot
from tests.search.conftest import ROOT

S = optuna.trial.TrialState


def sweep_study(tmp_path: Path, **overrides: object) -> Path:
    """The quick synthetic study, made tiny: two values of p, two architectures, a two-point learning-rate grid."""
    spec = yaml.safe_load((ROOT / "studies" / "paper_synthetic_correlation_quick.yaml").read_text())
    spec.update(
        name="sweep-t",
        dataset={"kind": "synthetic", "d": 10, "n_train": 300, "n_valid": 100, "n_test": 100, "seed": 3},
        sweep={"key": "p", "values": [0.2, 1.0]},
        architectures=[a for a in spec["architectures"] if a["name"] in ("shared_bottom", "omoe", "mmoe")],
        training={"epochs": 4, "patience": 2, "batch_size": 64, "device": "cpu"},
        retrain={"seeds": 5, "replicas_per_run": 3, "fresh_data": True},
    )
    spec.update(overrides)
    (tmp_path / "studies").mkdir()
    (tmp_path / "search_spaces" / "paper_synthetic").mkdir(parents=True)
    for f in (ROOT / "search_spaces" / "paper_synthetic").glob("*.yaml"):
        text = f.read_text().replace("[1.0e-4, 1.0e-3, 1.0e-2]", "[1.0e-3, 1.0e-2]")
        (tmp_path / "search_spaces" / "paper_synthetic" / f.name).write_text(text)
    path = tmp_path / "studies" / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def check_loss_curves(spec: StudySpec, url: str, table: pd.DataFrame) -> None:
    """The report's loss-against-steps table against a direct computation from the stored curves, and the stored
    curves against the stored final metrics (the validation loss at a run's best epoch is its validation MSE)."""
    steps_per_epoch = -(-300 // 64)  # 300 training rows in batches of 64
    assert len(table.groupby(["p", "architecture", "split"])) == 2 * 3 * 2
    assert (table.step == table.epoch * steps_per_epoch).all() and (table.runs == 5).all()
    for (p, arch, split), g in table.groupby(["p", "architecture", "split"]):
        assert g.step.is_monotonic_increasing and g.runs_training.is_monotonic_decreasing
        sub = next(s for s in spec.expand() if s.dataset.p == p)
        raw = read_seed_curves(url, sub.name)
        assert set(raw.task) == {"y1", "y2"} and set(raw.split) == {"train", "valid"}
        runs = raw[(raw.architecture == arch) & (raw.split == split)]
        wide = (
            runs.groupby(["seed", "step"]).loss.mean().unstack("step").ffill(axis=1)
        )  # a stopped run is held
        assert np.allclose(g["mean"].to_numpy(), wide.mean(axis=0).to_numpy(), rtol=1e-12)
        assert list(g.runs_training) == list(runs.groupby("step").seed.nunique())
    sub = spec.expand()[0]
    raw, results = read_seed_curves(url, sub.name), read_seed_results(url, sub.name)
    metrics = read_seed_metrics(url, sub.name)
    mse = metrics[(metrics.split == "valid") & (metrics.metric == "mse")]
    at_best = raw[raw.split == "valid"].merge(results[["architecture", "seed", "best_epoch"]])
    at_best = at_best[at_best.epoch == at_best.best_epoch].merge(mse, on=["architecture", "seed", "task"])
    assert len(at_best) == 3 * 5 * 2
    assert np.allclose(at_best.loss, at_best.value, rtol=1e-5)


def test_shipped_paper_synthetic_studies_expand_into_one_study_per_p() -> None:
    spec = load_study(ROOT / "studies" / "paper_synthetic_correlation.yaml")
    subs = spec.expand()
    assert [s.dataset.p for s in subs] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert subs[0].name == "paper_synthetic_correlation.p0.5"
    assert {a.name for a in spec.architectures} == {"shared_bottom", "omoe", "mmoe"}
    assert spec.retrain.fresh_data and spec.retrain.seeds == 200 and spec.sampler.name == "grid"
    sb = load_study(ROOT / "studies" / "paper_synthetic_shared_bottom.yaml")
    assert [a.name for a in sb.architectures] == ["shared_bottom"] and sb.training.lr == 1e-3


def test_sweep_runs_grid_and_fresh_data_end_to_end(tmp_path: Path) -> None:
    path = sweep_study(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    storage = open_storage(url, heartbeat=False)
    for sub in spec.expand():
        for arch in ("shared_bottom", "omoe", "mmoe"):
            study = optuna.load_study(study_name=sub.study_name(arch), storage=storage)
            trials = study.get_trials(states=(S.COMPLETE,))
            # the grid: every learning rate exactly once, carried by its ticket
            assert sorted(t.params["lr"] for t in trials) == [1e-3, 1e-2]
            assert sorted(keys.plain(t.user_attrs)["ticket"] for t in trials) == [0, 1]
        assert keys.plain(study.user_attrs)["spec"]["dataset"]["p"] == sub.dataset.p
    # a rerun queues nothing new
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert len(optuna.load_study(study_name=spec.expand()[0].study_name("mmoe"), storage=storage).trials) == 2

    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    for sub in spec.expand():
        results = read_seed_results(url, sub.name)
        assert sorted(results.groupby("architecture").seed.apply(sorted).tolist()) == [list(range(5))] * 3
        chunks = optuna.load_study(study_name=retrain_study_name(sub, "mmoe"), storage=storage).trials
        seeds = sorted(s for t in chunks for s in keys.plain(t.user_attrs)["dataset_seeds"])
        assert seeds == sorted(dataset_seed_of(sub, s) for s in range(5))  # every run drew its own data
        assert len(set(seeds)) == 5

    out = tmp_path / "rep" / "sweep.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    comp = pd.read_csv(tmp_path / "rep" / "sweep_comparison.csv")
    assert set(comp.p) == {0.2, 1.0} and set(comp.task) == {"mean over tasks", "y1", "y2"}
    assert (comp.seeds == 5).all() and len(comp) == 2 * 3 * 3
    chosen = pd.read_csv(tmp_path / "rep" / "sweep_chosen.csv")
    assert len(chosen) == 6 and chosen.chosen.str.startswith("lr=").all()
    pairs = pd.read_csv(tmp_path / "rep" / "sweep_pairs.csv")
    assert set(pairs.design) == {"unpaired (Mann-Whitney)", "paired by run (sign test)"} and len(pairs) == 12
    losses = pd.read_csv(tmp_path / "rep" / "sweep_seed_losses.csv")
    assert len(losses) == 2 * 3 * 5
    html = out.read_text()
    assert "test loss against p" in html and "Trainability" in html and "fresh synthetic dataset" in html
    # the written findings: every one of the paper's four observations, judged, first on the page
    found = pd.read_csv(tmp_path / "rep" / "sweep_findings.csv")
    assert [c.split(" (")[0][:30] for c in found.claim] == [
        "Both MoE models beat Shared-Bo", "MMoE's loss barely moves with ", "Shared-Bottom's loss rises as ",
        "Trainability: Shared-Bottom ha",
    ]  # fmt: skip
    assert set(found.verdict) <= {"holds", "partly", "does not hold"}
    section = html[html.index('<section id="findings">') :]
    section = section[: section.index("</section>")]
    assert section.count("<li>") == 4 and "paired runs" in section and "Spearman" in section
    assert html.index('id="findings"') < html.index('<section id="changes">') < html.index("<h2>Test loss")
    changes = pd.read_csv(tmp_path / "rep" / "sweep_changes.csv")  # p = 0.2 against p = 1, per architecture
    assert len(changes) == 3 and (changes.holm_family_size == 1).all() and (changes["from"] == 1.0).all()
    assert (changes.runs == 5).all() and (changes.to == 0.2).all()
    assert set(changes.reading) <= {"flat", "rises", "falls", "not separated"}
    conv = pd.read_csv(tmp_path / "rep" / "sweep_convergence.csv")
    assert len(conv) == 6 and (conv.runs == 5).all() and (conv.epoch_cap == 4).all()
    assert (conv.runs_at_cap <= conv.runs).all() and "<h2>Convergence</h2>" in html
    check_loss_curves(spec, url, pd.read_csv(tmp_path / "rep" / "sweep_loss_curves.csv"))
    assert '<section id="loss-curves">' in html and "training steps" in html
    # exported, then reported from the tables alone: the same tables (a sweep exports one set per value of p)
    assert main(["export", str(path), "--storage", url, "--out", str(tmp_path / "exp")]) == 0
    assert len(list((tmp_path / "exp").glob("*_attrs.json"))) == 2
    again = tmp_path / "again" / "sweep.html"
    assert main(["report", str(path), "--from-tables", str(tmp_path / "exp"), "--out", str(again)]) == 0
    for table in (
        "comparison", "pairs", "chosen", "convergence", "seed_losses", "findings", "loss_curves", "changes",
    ):  # fmt: skip
        a = pd.read_csv(tmp_path / "rep" / f"sweep_{table}.csv")
        b = pd.read_csv(tmp_path / "again" / f"sweep_{table}.csv")
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)

    dom = dump_dom(out.as_uri(), budget_ms=20000)
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    attrs = dict(re.findall(r'(data-[a-z-]+)="(\d+)"', body.group(0)))
    assert attrs["data-js-errors"] == "0"
    # the paper's views: loss against p with bands, per-task curves, trainability histograms, loss against steps
    assert attrs["data-expected-plots"] == "4" and attrs["data-rendered-plots"] == "4"
    for title in (
        "Test loss against p (the paper",
        "Per task against p",
        "Trainability histograms (the paper",
        "Loss against training steps",
    ):
        assert title in dom
    shot = screenshot(out.as_uri(), tmp_path / "sweep.png", size="1300,2600")
    assert shot.stat().st_size > 30_000
    Path("reports").mkdir(exist_ok=True)
    (Path("reports") / "test-sweep-report.png").write_bytes(shot.read_bytes())


def test_committed_full_size_findings_are_the_ones_the_results_readme_states() -> None:
    """The findings computed from the committed full-size sweep (200 runs per cell) are the verdicts
    docs/results/README.md writes, word for word."""
    from hpo.report.findings import paper_findings

    results = ROOT / "docs" / "results"
    fig4 = paper_findings(pd.read_csv(results / "paper_synthetic_correlation_seed_losses.csv"), "p")
    fig3 = paper_findings(pd.read_csv(results / "paper_synthetic_shared_bottom_seed_losses.csv"), "p")
    assert [f.verdict for f in fig4] == ["holds", "partly", "does not hold", "partly"]
    assert [f.verdict for f in fig3] == ["does not hold"]
    readme = (results / "README.md").read_text()
    for f in [*fig4, *fig3]:
        assert f"{f.claim}: **{f.verdict}**" in readme, f.claim


def test_committed_figure3_report_is_rebuilt_exactly_from_its_committed_files(tmp_path: Path) -> None:
    """The full-size Figure-3 report was regenerated from its committed CSVs (its database is gone): doing it
    again with today's code gives the committed tables to the last digit, so every number in the committed report
    follows from the committed per-run data."""
    import subprocess
    import sys

    results = ROOT / "docs" / "results"
    study = ROOT / "studies" / "paper_synthetic_shared_bottom.yaml"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "tables_from_sweep_report.py"), str(study),
         str(results / "paper_synthetic_shared_bottom"), str(results / "paper_synthetic_epochs.csv"),
         str(tmp_path / "tables")],
        check=True, capture_output=True,
    )  # fmt: skip
    out = tmp_path / "rep" / "paper_synthetic_shared_bottom.html"
    assert main(["report", str(study), "--from-tables", str(tmp_path / "tables"), "--out", str(out)]) == 0
    for table in ("seed_losses", "trials", "chosen", "comparison", "convergence", "findings"):
        committed = pd.read_csv(results / f"paper_synthetic_shared_bottom_{table}.csv")
        rebuilt = pd.read_csv(tmp_path / "rep" / f"paper_synthetic_shared_bottom_{table}.csv")
        pd.testing.assert_frame_equal(committed, rebuilt, check_exact=True, obj=table)
    assert (
        "f6b0efb" in out.read_text()
    )  # the revision the runs recorded, carried over from the original report


def test_grid_and_sweep_errors_are_clear(tmp_path: Path) -> None:
    path = sweep_study(tmp_path, trials=5)
    with pytest.raises(ConfigError, match=r"trials is 5, but the grid of shared_bottom has 2 points"):
        from hpo.search.runner import run_study

        run_study(
            load_study(path).expand()[0], f"sqlite:///{tmp_path / 'x.db'}", devices=("cpu",), quiet=True
        )
    assert not (tmp_path / "x.db").exists()  # refused before the storage was opened
    bad = tmp_path / "studies" / "bad.yaml"
    raw = yaml.safe_load(path.read_text())
    bad.write_text(yaml.safe_dump({**raw, "sweep": {"key": "p", "values": [0.5, 2.0]}}))
    with pytest.raises(ConfigError, match=r"bad.yaml.*less than or equal to 1"):
        load_study(bad)
    bad.write_text(yaml.safe_dump({**raw, "dataset": {"kind": "census-income"}}))
    with pytest.raises(ConfigError, match=r"sweep.*synthetic"):
        load_study(bad)
    bad.write_text(
        yaml.safe_dump({**raw, "sweep": None, "optimizer_space": "../search_spaces/optimizer.yaml"})
    )
    (tmp_path / "search_spaces" / "optimizer.yaml").write_text(
        "params:\n  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
    )
    with pytest.raises(ConfigError, match=r"optimizer.yaml: params.lr is float; the grid sampler needs"):
        run_study(load_study(bad), f"sqlite:///{tmp_path / 'x.db'}", devices=("cpu",), quiet=True)


def test_every_ablation_changes_exactly_one_setting_of_the_baseline() -> None:
    """studies/ablations/: the Figure-3 sweep with one generator or training setting changed per file, so that a
    trend that appears or not can be put down to that one setting."""
    folder = ROOT / "studies" / "ablations"
    base = load_study(folder / "baseline.yaml")
    files = sorted(p for p in folder.glob("*.yaml") if p.name != "baseline.yaml")
    assert len(files) >= 12
    changed = set()
    for path in files:
        spec = load_study(path)
        assert [s.dataset.p for s in spec.expand()] == [0.5, 0.7, 0.9, 1.0]
        diff = (
            {
                f"dataset.{k}"
                for k, v in spec.dataset.model_dump().items()
                if v != base.dataset.model_dump()[k]
            }
            | {
                f"training.{k}"
                for k, v in spec.training.model_dump().items()
                if v != base.training.model_dump()[k]
            }
            | {"bottom_units" for a, b in zip(spec.architectures, base.architectures, strict=True) if a != b}
        )
        if diff in ({"training.optimizer", "training.lr"}, {"training.epochs", "training.patience"}):
            diff = {
                path.stem
            }  # the optimiser with its own learning rate; the training length with its patience
        assert len(diff) == 1, (path.name, diff)
        changed |= diff
    assert {"dataset.n_train", "dataset.noise", "dataset.m", "dataset.c", "dataset.sine_scale"} <= changed
    for units in (2, 4, 8):  # the capacity ablations change only the width of the shared bottom
        arch = load_study(folder / f"bottom_{units}.yaml").architectures[0]
        space = (folder / str(arch.search_space)).resolve()
        assert yaml.safe_load(space.read_text())["model"] == {
            "bottom_units": [units],
            "tower_units": [8],
        }


def test_pooled_choice_retrains_one_configuration_at_every_value(tmp_path: Path) -> None:
    """``sweep: {choose: pooled}``: each architecture retrains, at every p, the learning rate whose validation
    objective averaged over the p values is best (computed here from the grid trials directly)."""
    path = sweep_study(
        tmp_path,
        sweep={"key": "p", "values": [0.2, 1.0], "choose": "pooled"},
        retrain={"seeds": 2, "replicas_per_run": 2, "fresh_data": True},
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    storage = open_storage(url, heartbeat=False)
    for arch in ("shared_bottom", "omoe", "mmoe"):
        grids = [
            {
                t.params["lr"]: t.values[0]
                for t in optuna.load_study(study_name=s.study_name(arch), storage=storage).trials
            }
            for s in spec.expand()
        ]
        expected = min(grids[0], key=lambda lr: np.mean([g[lr] for g in grids]))
        for sub in spec.expand():
            retrain = optuna.load_study(study_name=retrain_study_name(sub, arch), storage=storage)
            assert keys.plain(retrain.user_attrs)[keys.TRAIN_CONFIG]["lr"] == expected
    out = tmp_path / "rep" / "sweep.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    assert "chosen once for the whole sweep (<code>choose: pooled</code>)" in out.read_text()


def test_paired_changes_against_a_direct_computation() -> None:
    """Each value against the top, paired by run: the change of the medians, the runs with a higher loss, the
    Wilcoxon p and its Holm correction over the architecture's values, and the reading: a shift of 20% of the
    top's median reads "rises", a shift of 0.1% (margin 10%) "flat", and noise with a wide spread neither."""
    from scipy import stats as sps

    from hpo.report.findings import paired_changes
    from hpo.report.stats import holm

    rng = np.random.default_rng(4)
    base = 1.0 + 0.05 * rng.standard_normal(60)
    shift = {"up": (0.2, 0.01), "same": (0.001, 0.001), "noisy": (0.0, 0.5)}
    rows = []
    for arch, (delta, sd) in shift.items():
        for v, scale in ((1.0, 0.0), (0.8, 0.5), (0.6, 1.0)):
            loss = base + scale * delta + (sd * rng.standard_normal(60) if v != 1.0 else 0.0)
            rows += [
                {"architecture": arch, "seed": s, "value": v, "mean over tasks": x}
                for s, x in enumerate(loss)
            ]
    losses = pd.DataFrame(rows)
    got = paired_changes(losses, margin=0.10).set_index(["architecture", "to"])
    for arch in shift:
        top = losses[(losses.architecture == arch) & (losses.value == 1.0)].set_index("seed")[
            "mean over tasks"
        ]
        ps = []
        for v in (0.6, 0.8):
            at = losses[(losses.architecture == arch) & (losses.value == v)].set_index("seed")[
                "mean over tasks"
            ]
            r = got.loc[(arch, v)]
            assert r.median_change == pytest.approx(at.median() - top.median())
            assert r.runs == 60 and r.runs_higher == int((at > top).sum()) and r.holm_family_size == 2
            assert r.ci95_low <= r.median_change <= r.ci95_high
            assert r.wilcoxon_p == pytest.approx(sps.wilcoxon(at - top).pvalue)
            assert r.margin == pytest.approx(0.1 * top.median())
            ps.append(r.wilcoxon_p)
        assert [got.loc[(arch, v)].holm_p for v in (0.6, 0.8)] == pytest.approx(holm(ps))
    assert set(got.loc["up"].reading) == {"rises"}
    assert set(got.loc["same"].reading) == {"flat"}
    assert set(got.loc["noisy"].reading) == {"not separated"}
