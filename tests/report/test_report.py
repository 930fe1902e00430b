from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
import torch

from hpo.cli import main
from hpo.config.study import load_study
from hpo.logs import duration
from hpo.report.stats import holm
from hpo.search.objective import code_revision
from hpo.search.retrain import retrain_study_name
from hpo.storage import keys
from hpo.storage.engine import open_storage
from hpo.storage.results import read_seed_metrics, read_seed_results
from tests.browser import dump_dom, screenshot
from tests.search.conftest import make_study

ROOT = Path(__file__).resolve().parents[2]


def tuned(tmp_path: Path, **overrides: object) -> tuple[Path, str]:
    path = make_study(tmp_path, **overrides)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", str(path), "--storage", url, "--n-trials", "3", "--devices", "cpu", "--quiet"]) == 0
    return path, url


def test_run_retrain_report_export_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, url = tuned(tmp_path, retrain={"seeds": 6, "replicas_per_run": 4})
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    results = read_seed_results(url, spec.name)
    assert sorted(results.groupby("architecture").seed.apply(sorted).tolist()) == [list(range(6))] * 2
    assert set(results.replicas_in_run) == {4, 2}  # chunks of 4 and 2 seeds, trained vectorised
    assert (results.status == "ok").all()
    for arch in ("shared_bottom", "mmoe"):  # every chunk says which code, packages and kernel it ran on
        for chunk in optuna.load_study(study_name=retrain_study_name(spec, arch), storage=url).trials:
            attrs = keys.plain(chunk.user_attrs)
            assert (
                attrs["code_revision"] == code_revision() and attrs["versions"]["torch"] == torch.__version__
            )
            assert {"threads", "kernel"} <= set(attrs)
    # a rerun queues nothing and trains nothing: every seed is there once
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    assert len(read_seed_results(url, spec.name)) == 12
    # queryable with SQL
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT architecture, count(*) FROM hpo_seed_metrics WHERE split = 'test' "
                "AND metric = 'mse' AND task = 'y1' GROUP BY architecture"
            )
        ).all()
    assert sorted(rows) == [("mmoe", 6), ("shared_bottom", 6)]
    out = tmp_path / "rep" / "smoke.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    comp = pd.read_csv(tmp_path / "rep" / "smoke_comparison.csv")
    assert set(comp.columns) >= {"mean", "std", "median", "iqm", "ci95_low", "ci95_high"}
    assert len(comp) == 4 and (comp.seeds == 6).all()
    curves = pd.read_csv(tmp_path / "rep" / "smoke_loss_curves.csv")  # loss against steps, every run in it
    assert set(curves.architecture) == {"mmoe", "shared_bottom"} and set(curves.split) == {"train", "valid"}
    assert (curves.runs == 6).all() and (curves.runs_training <= curves.runs).all()
    assert (curves.ci95_low <= curves["mean"]).all() and (curves["mean"] <= curves.ci95_high).all()
    assert '<section id="loss-curves">' in out.read_text()
    pairs = pd.read_csv(tmp_path / "rep" / "smoke_pairs.csv")
    assert set(pairs.columns) >= {"p_a_beats_b", "test", "p_value", "holm_p", "holm_family_size"}
    # one correction family, as the report says: every pair on every task of the table
    assert len(set(pairs.task)) == 2 and (pairs.holm_family_size == len(pairs)).all()
    assert pairs.holm_p.tolist() == pytest.approx(holm(pairs.p_value.tolist()))
    for fmt in ("csv", "parquet"):
        assert (
            main(["export", str(path), "--storage", url, "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
        )
    assert len(pd.read_parquet(tmp_path / "parquet" / f"{spec.name}_seed_results.parquet")) == 12
    # the exported folder alone renders the same report: every table the same, to the last bit
    for fmt in ("csv", "parquet"):
        again = tmp_path / f"again-{fmt}" / "smoke.html"
        assert main(["report", str(path), "--from-tables", str(tmp_path / fmt), "--out", str(again)]) == 0
        for table in ("comparison", "pairs", "verdict", "searched", "cost", "loss_curves"):
            a = pd.read_csv(tmp_path / "rep" / f"smoke_{table}.csv")
            b = pd.read_csv(again.parent / f"smoke_{table}.csv")
            pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{fmt} {table}")
        assert "read back from the tables exported to" in again.read_text()
    # a folder that is not an export: one line naming the file that is missing and how to make it
    capsys.readouterr()
    assert main(["report", str(path), "--from-tables", str(tmp_path / "nowhere"), "--out", str(again)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"nowhere/{spec.name}_attrs.json: not found" in err and "hpo export" in err


def test_a_report_during_the_retraining_withholds_the_verdict(tmp_path: Path) -> None:
    """Seeds missing from one architecture (as while `hpo retrain` runs): no verdict from the seeds so far, the
    verdict section says how many of each architecture's seeds are in, and the header calls it a progress report;
    with every seed in, the verdict is back."""
    path, url = tuned(tmp_path, retrain={"seeds": 4})
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    out = tmp_path / "full" / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    assert "No verdict yet" not in out.read_text() and "<b>Best: " in out.read_text()
    with sa.create_engine(url).begin() as conn:  # mmoe's seeds 2 and 3 not trained yet
        for table in ("hpo_seed_results", "hpo_seed_metrics"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE architecture = 'mmoe' AND seed >= 2"))
    out = tmp_path / "part" / "r.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    page = out.read_text()
    assert "No verdict yet: the retraining is in progress (seeds trained of those planned: mmoe 2/4)" in page
    # the two missing seeds at the mean of mmoe's two trained ones, read back from the same database
    with sa.create_engine(url).begin() as conn:
        per_seed = conn.execute(
            sa.text(
                "SELECT AVG(wall_time / replicas_in_run) FROM hpo_seed_results WHERE architecture = 'mmoe'"
            )
        ).scalar_one()
    assert f"the rest need about {duration(2 * per_seed)} of one worker." in page
    assert "<b>Best: " not in page and "the retraining is in progress, a progress report" in page
    assert not (tmp_path / "part" / "r_verdict.csv").exists()  # withheld beside the page too
    assert pd.read_csv(tmp_path / "part" / "r_comparison.csv").groupby(
        "architecture"
    ).seeds.max().to_dict() == {
        "mmoe": 2,
        "shared_bottom": 4,
    }


@pytest.mark.browser
def test_report_renders_offline_in_chromium(tmp_path: Path) -> None:
    path, url = tuned(tmp_path, retrain={"seeds": 5}, architectures=["shared_bottom", "mmoe", "omoe"])
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    # planted: one collapsed seed (mmoe seed 0's test loss x 100); shared_bottom's n_layers ranges over {1, 2}, so
    # its best configuration always sits on a search-space bound
    with sa.create_engine(url).begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE hpo_seed_metrics SET value = value * 100 WHERE architecture = 'mmoe' AND seed = 0 "
                "AND split = 'test' AND task = 'y1' AND metric = 'mse'"
            )
        )
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    html = out.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)  # nothing to fetch: all inline
    dom = dump_dom(out.as_uri(), budget_ms=20000)
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    attrs = dict(re.findall(r'(data-[a-z-]+)="(\d+)"', body.group(0)))
    assert attrs["data-js-errors"] == "0"
    assert int(attrs["data-expected-plots"]) >= 9
    assert attrs["data-rendered-plots"] == attrs["data-expected-plots"]
    assert dom.count('<table class="results') >= 5  # per-task tables, pairs, cost, provenance
    assert "Provenance" in dom and "code revision" in dom
    kernels = re.search(r"training kernels</th><td[^>]*>([^<]*)<", dom)  # which code trained, as recorded
    assert kernels is not None and re.fullmatch(r"compiled|fallback: .+", kernels.group(1)), dom
    verdict = dom[dom.index('<section id="verdict">') :]
    verdict = verdict[: verdict.index("</section>")]
    assert "mmoe: 1 collapsed seed on y1" in verdict
    # and the verdict drawn again without it, beside the page as a CSV of its own
    assert "y1 with its collapsed seeds left out (mmoe 1 of 5): the verdict " in verdict
    again = pd.read_csv(tmp_path / "report_verdict_without_collapsed.csv")
    first = pd.read_csv(tmp_path / "report_verdict.csv")
    assert set(again.task) == set(first.task) and len(again) == len(first)  # drawn again over the same family
    assert "shared_bottom's best configuration sits on a search-space bound (n_layers=" in verdict
    assert dom.index('id="verdict"') < dom.index('id="searched"')  # the verdict leads
    assert "outside the axis: mmoe 1 seed" in dom  # counted on the shared axis, not stretching it
    ranks = dom[dom.index('<section id="ranks">') :]
    ranks = ranks[: ranks.index("</section>")]
    assert "over 10 blocks of (task, seed)" in ranks and "Friedman test" in ranks and "Nemenyi" in ranks
    assert "Pareto front" in dom and "mean rank over 10 (task, seed) blocks" in dom
    assert "Hyperparameter importance (fANOVA) is drawn only for architectures with at least 20" in dom
    assert "Mean loss over runs against training steps" in dom  # drawn, and counted among the rendered plots
    shot = screenshot(out.as_uri(), tmp_path / "report.png", size="1300,3000")
    assert shot.stat().st_size > 50_000
    Path("reports").mkdir(exist_ok=True)
    (Path("reports") / "test-report.png").write_bytes(shot.read_bytes())


def test_user_text_is_escaped_in_the_report(tmp_path: Path) -> None:
    ds = tmp_path / "data.yaml"
    import numpy as np

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b"], 300)})
    df["<script>alert(1)</script>"] = (df.x + rng.normal(size=300) > 0).astype(int)
    df.to_csv(tmp_path / "t.csv", index=False)
    ds.write_text(
        "name: evil\nfile: t.csv\ncontinuous: [x]\ncategorical: [c]\ntasks:\n"
        "  - {name: '<script>alert(1)</script>', column: '<script>alert(1)</script>', kind: binary, equals: 1}\n"
        "  - {name: x, column: x, kind: regression}\n"
    )
    path, url = tuned(tmp_path, dataset={"kind": "file", "path": str(ds)}, retrain={"seeds": 3})
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    out = tmp_path / "evil.html"
    assert main(["report", str(path), "--storage", url, "--out", str(out)]) == 0
    text = out.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    body = text.split("</head>", 1)[1]
    assert "<script>alert(1)</script>" not in body  # never raw: HTML-escaped in text, \\u003c-escaped in JSON


def test_killed_retrain_worker_then_rerun_gives_every_seed_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from hpo.search.retrain import prepare_retrain
    from hpo.search.studies import load_study_dataset

    path, url = tuned(tmp_path, architectures=["mmoe"], retrain={"seeds": 6, "replicas_per_run": 2})
    spec = load_study(path)
    storage = open_storage(url, heartbeat=False)
    (study,) = prepare_retrain(spec, storage, load_study_dataset(spec), 6, torch.device("cpu")).values()
    # a long configuration, so that the kill lands in the middle of a chunk
    study.set_user_attr(
        keys.key("train_config"),
        {**keys.plain(study.user_attrs)["train_config"], "epochs": 25, "patience": None, "batch_size": 32},
    )
    env = {**os.environ, "HPO_HEARTBEAT_SECONDS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpo.cli",
            "retrain",
            str(path),
            "--storage",
            url,
            "--devices",
            "cpu",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.time()
    while time.time() - t0 < 600 and proc.poll() is None:  # generous: a loaded machine trains slowly
        trials = study.get_trials()
        if any(t.state == optuna.trial.TrialState.COMPLETE for t in trials) and any(
            t.state == optuna.trial.TrialState.RUNNING for t in trials
        ):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = read_seed_results(url, spec.name)
    assert 0 < len(before) < 6  # killed midway
    monkeypatch.setattr("hpo.storage.engine.HEARTBEAT_SECONDS", 1)
    time.sleep(3.5)  # the dead worker's heartbeat goes stale
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    after = read_seed_results(url, spec.name)
    assert sorted(after.seed) == list(range(6))  # every seed exactly once (primary key: spec, arch, seed)
    metrics = read_seed_metrics(url, spec.name)
    assert not metrics.duplicated(["architecture", "seed", "split", "task", "metric"]).any()
    assert len(metrics) == 6 * 3 * 2 * 2  # seeds x splits x tasks x metrics
    trials = study.get_trials()
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1
    assert [t.state for t in trials if t.system_attrs.get("failed_trial") == failed[0].number] == [
        optuna.trial.TrialState.COMPLETE
    ]


def test_retrain_cuts_cpu_chunks_by_the_activation_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``replicas_per_run``, a CPU retrain's chunk holds as many seeds as keep the activations under
    ``CPU_CHUNK_ACTIVATION_BYTES`` (wide models train alone: bench/chunk.py); lowered here so that the test's small
    models count as wide, every seed is its own chunk, and every seed is still trained once."""
    from hpo.training import memory

    path, url = tuned(tmp_path, retrain={"seeds": 3})
    monkeypatch.setattr(memory, "CPU_CHUNK_ACTIVATION_BYTES", 1)
    assert main(["retrain", str(path), "--storage", url, "--devices", "cpu", "--quiet"]) == 0
    spec = load_study(path)
    for arch in ("shared_bottom", "mmoe"):
        study = optuna.load_study(study_name=retrain_study_name(spec, arch), storage=url)
        assert keys.plain(study.user_attrs)[keys.CHUNK_SIZE] == 1
        assert sorted(len(keys.plain(t.user_attrs)[keys.SEEDS]) for t in study.trials) == [1, 1, 1]
    results = read_seed_results(url, spec.name)
    assert sorted(results.groupby("architecture").seed.apply(sorted).tolist()) == [[0, 1, 2]] * 2
    assert set(results.replicas_in_run) == {1}
