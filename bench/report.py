"""Report time at full size: 11 architectures x 400 seeds (issue 15 asks under 30 s for 10 x 400).

A real study is tuned briefly (every built-in architecture, 2 trials each, 1 epoch on a small synthetic
dataset), then 400 seeds per architecture of retrain results are written straight into the seed tables
(values drawn around a per-architecture mean, one planted collapsed seed), so that the report computes every
statistic, figure and table at full size without hours of retraining. Prints the wall time of ``write_report``
and of ``collect`` alone (the storage part), and the report's share of the 30-second budget.

    python bench/report.py [--seeds 400] [--json]

Measured on the 2-core CPU machine (2026-11-23): 11 architectures x 400 seeds, 84.8 s with the pairwise bootstrap
comparing all n x m pairs per resample; 12.9 s (0.43 of the budget) after computing every resample's P(A beats B)
from multiplicities and cumulative counts (same draws, same values; tests/report/test_stats.py checks equality).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from hpo.cli import main as hpo
from hpo.config.study import load_study
from hpo.models import list_models
from hpo.report.collect import collect
from hpo.report.html import write_report
from hpo.storage.results import write_seed_results

ROOT = Path(__file__).resolve().parents[1]


def tuned_study(directory: Path) -> tuple[Path, str]:
    shutil.copytree(ROOT / "search_spaces", directory / "search_spaces")
    (directory / "studies").mkdir()
    spec = yaml.safe_load((ROOT / "studies" / "smoke.yaml").read_text())
    archs = [e.name for e in list_models() if e.origin == "built-in"]
    spec.update(
        name="report_bench",
        architectures=[{"name": a, "search_space": f"../search_spaces/small/{a}.yaml"} for a in archs],
        trials=2,
        training={"epochs": 1, "batch_size": 256, "device": "cpu"},
    )
    path = directory / "studies" / "report_bench.yaml"
    path.write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{directory / 'bench.db'}"
    assert hpo(["run", str(path), "--storage", url, "--quiet"]) == 0
    return path, url


def fake_seeds(path: Path, url: str, seeds: int) -> None:
    spec = load_study(path)
    rng = np.random.default_rng(0)
    for k, arch in enumerate(a.name for a in spec.architectures):
        results, metrics = [], []
        for s in range(seeds):
            key = {"spec": spec.name, "architecture": arch, "seed": s}
            results.append(
                {**key, "init_seed": s, "data_seed": s + 10_000, "tuning_trial": 0, "status": "ok", "reason": "",
                 "epochs_run": 20, "best_epoch": 15, "wall_time": 1.0, "replicas_in_run": 50, "device": "cpu",
                 "parameter_count": 10_000, "created_at": None}
            )  # fmt: skip
            for split in ("valid", "test"):
                for task in ("y1", "y2"):
                    mse = float(rng.gamma(20, (1.5 + 0.02 * k) / 20)) * (100 if (s, k) == (0, 3) else 1)
                    metrics += [{**key, "split": split, "task": task, "metric": "mse", "value": mse},
                                {**key, "split": split, "task": task, "metric": "r2", "value": 1 - mse / 3}]  # fmt: skip
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        write_seed_results(url, [{**r, "created_at": now} for r in results], metrics)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=400)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path, url = tuned_study(directory)
        fake_seeds(path, url, args.seeds)
        spec = load_study(path)
        t0 = time.perf_counter()
        collect(spec, url)
        t_collect = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = write_report(spec, directory / "report.html", url)
        t_report = time.perf_counter() - t0
        size = out.stat().st_size / 2**20
    result = {
        "architectures": len(spec.architectures),
        "seeds": args.seeds,
        "collect_seconds": round(t_collect, 2),
        "report_seconds": round(t_report, 2),
        "share_of_30s_budget": round(t_report / 30, 3),
        "html_mb": round(size, 1),
    }
    for k, v in result.items():
        print(f"{k:>20}: {v}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
