"""Many workers on one study: scheduling overhead per trial and database connections, measured.

For each worker count (default 8, 16 and 32 processes; on this 2-core machine they time-share the cores, which is
what makes the per-trial overhead visible), one study of a near-trivial objective (Shared-Bottom, 1 epoch on 300
synthetic rows, tens of milliseconds of training) is queued with ``hpo run --workers 0`` and drained by that many
``hpo worker`` processes, on PostgreSQL directly and through ``hpo proxy`` (gRPC, one database connection held by
the proxy). After each run the counts are checked exactly (every ticket complete once, nothing left running or
waiting, no surplus trial counted), and it prints:

* ``overhead_s_per_trial``: worker-seconds not spent training, per trial: (workers x wall - sum of the trials'
  training time) / trials. It holds process start, dataset load, worker registration, lock waits, ticket claims,
  sampling and the records hpo writes; it is what a cheap trial pays on top of its own training;
* ``peak_connections``: the most connections the database held during the run (``pg_stat_activity``), sampled
  every 0.2 s, and ``failed_workers``: workers that could not run at all (a server refusing more clients than its
  ``max_connections`` ends a worker with one line; the others still finish every trial, which is checked);
* the same overhead relative to 8 workers (``--json`` prints the ratios as the last line): how scheduling scales
  with the number of workers.

Needs a PostgreSQL server (``HPO_TEST_POSTGRES_URL`` or the local default of the test suite).

    python bench/workers.py [--workers 8,16,32] [--trials 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy
import yaml

from hpo.storage import keys

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def trivial_study(directory: Path, trials: int) -> Path:
    shutil.copytree(ROOT / "search_spaces", directory / "search_spaces", dirs_exist_ok=True)
    (directory / "studies").mkdir(exist_ok=True)
    spec = yaml.safe_load((ROOT / "studies" / "smoke.yaml").read_text())
    spec.update(
        name=f"bench-workers-{uuid.uuid4().hex[:8]}",
        architectures=["shared_bottom"],
        dataset={
            "kind": "synthetic",
            "p": 0.7,
            "d": 8,
            "n_train": 300,
            "n_valid": 100,
            "n_test": 100,
            "seed": 0,
        },
        sampler={"name": "random", "seed": 0},
        training={"epochs": 1, "patience": None, "batch_size": 256, "device": "cpu"},
        trials=trials,
    )
    path = directory / "studies" / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def hpo(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpo.cli", *args]


class Connections:
    """Samples the database's connection count in a thread; ``peak`` is the most seen."""

    def __init__(self, url: str) -> None:
        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self.peak, self.stop, self.saturated = 0, threading.Event(), False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        while not self.stop.is_set():
            try:
                with self.engine.connect() as conn:  # its own connection is not counted
                    self.peak = max(self.peak, int(conn.execute(query).scalar_one()) - 1)
            except (
                sqlalchemy.exc.OperationalError
            ):  # the server is full: every slot but the reserved ones taken
                self.saturated = True
            time.sleep(0.2)

    def __enter__(self) -> Connections:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(db_url: str, workers: int, trials_each: int, via_proxy: bool, work: Path) -> dict[str, float]:
    """Queue ``workers x trials_each`` trials, drain them with ``workers`` processes; check and measure."""
    n = workers * trials_each
    path = trivial_study(work, n)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(hpo("run", str(path), "--storage", db_url, "--workers", "0"), env=env, check=True)
    proxy = None
    url = db_url
    if via_proxy:
        port = free_port()
        proxy = subprocess.Popen(
            hpo("proxy", "--storage", db_url, "--port", str(port)), env=env, stdout=subprocess.DEVNULL
        )
        url = f"grpc://127.0.0.1:{port}"
        time.sleep(5)
    try:
        with Connections(db_url) as conns:
            t0 = time.perf_counter()
            procs = [
                subprocess.Popen(
                    hpo(
                        "worker",
                        str(path),
                        "--storage",
                        url,
                        "--device",
                        "cpu",
                        "--quiet",
                        "--worker-index",
                        str(i),
                    ),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for i in range(workers)
            ]
            codes = [p.wait() for p in procs]
            wall = time.perf_counter() - t0
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait()
    failed = sum(1 for c in codes if c != 0)  # e.g. refused by the server: more clients than max_connections
    if failed:  # the operator's path: run the study again, which re-queues the failed workers' tickets
        subprocess.run(
            hpo("run", str(path), "--storage", db_url, "--devices", "cpu", "--quiet"), env=env, check=True
        )
    name = yaml.safe_load(path.read_text())["name"] + "/shared_bottom"
    trials = optuna.load_study(study_name=name, storage=db_url).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    tickets = sorted(keys.plain(t.user_attrs)["ticket"] for t in done)
    assert tickets == list(range(n)), f"tickets {tickets}"
    assert not [
        t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    ]
    training = sum(keys.plain(t.user_attrs)["wall_time"] for t in done)
    return {
        "trials": n,
        "wall_s": wall,
        "overhead_s_per_trial": (workers * wall - training) / n,
        "peak_connections": f"{conns.peak}{'+ (server full)' if conns.saturated else ''}",
        "failed_workers": failed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="8,16,32")
    ap.add_argument("--trials", type=int, default=4, help="trials per worker")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    db_url = os.environ.get("HPO_TEST_POSTGRES_URL", DEFAULT_URL)
    counts = [int(w) for w in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="hpo-bench-workers-"))
    rows = {}
    try:
        for via in (False, True):
            for w in counts:
                rows[("proxy" if via else "postgres", w)] = one_run(db_url, w, args.trials, via, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{'storage':<9} {'workers':>7} {'trials':>6} {'wall s':>7} {'overhead s/trial':>16} {'peak conns':>10} "
        f"{'failed':>6}"
    )
    for (kind, w), r in rows.items():
        print(
            f"{kind:<9} {w:>7} {r['trials']:>6} {r['wall_s']:>7.1f} {r['overhead_s_per_trial']:>16.2f} "
            f"{r['peak_connections']:>10} {r['failed_workers']:>6}"
        )
    ratios = {}
    for kind in ("postgres", "proxy"):
        base = rows[(kind, counts[0])]["overhead_s_per_trial"]
        for w in counts[1:]:
            ratios[f"{kind}_overhead_{w}_vs_{counts[0]}"] = rows[(kind, w)]["overhead_s_per_trial"] / base
        ratios[f"{kind}_failed_workers_at_{counts[-1]}"] = rows[(kind, counts[-1])]["failed_workers"]
    print("every run: each ticket complete exactly once, nothing left running or waiting")
    print("(a failed worker exited with one line, and the others did its trials)")
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))


if __name__ == "__main__":
    main()
