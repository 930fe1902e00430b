"""Held workers: ``hpo run --workers N`` starts its children before its own imports and checks, and releases
them with the run's deadline once the studies are ready, or dismisses them, untouched, when it stops first."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hpo.search.launch import Worker, release_workers, stop_workers, stopped_line, wait_for_go
from tests.reliability.test_overlap import hpo
from tests.search.conftest import make_study
from tests.test_layering import modules_after


def test_the_launcher_side_imports_neither_torch_nor_the_trainer() -> None:
    """What makes starting the children first worth it: the launcher reaches them in a fraction of a second."""
    loaded = modules_after("import hpo.cli, hpo.search.launch, hpo.cores")
    assert "torch" not in loaded and not {m for m in loaded if m.startswith("hpo.training")}


def test_the_go_line_carries_the_deadline_to_a_child_through_its_pipe() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print(sys.stdin.readline(), end='')"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    release_workers([Worker(child, io.StringIO(), 1)], 1_900_000_000.5)
    assert child.stdout is not None
    line = child.stdout.read()
    child.wait(timeout=30)
    assert wait_for_go(io.StringIO(line)) == (True, 1_900_000_000.5)
    assert wait_for_go(io.StringIO("go none\n")) == (True, None)
    assert wait_for_go(io.StringIO("")) == (False, None)  # the launcher closed the pipe: leave quietly


def test_held_children_leave_untouched_when_the_launcher_refuses_its_input(tmp_path: Path) -> None:
    """A study that fails the launcher's checks: one line, exit 2, no database, and every child it had started
    (before it could know) gone."""
    path = make_study(
        tmp_path, trials=2, architectures=["shared_bottom"], training={"epochs": 1, "device": "cpu"}
    )
    spec = yaml.safe_load(path.read_text())
    spec["dataset"] = {**spec["dataset"], "seed": "not a number"}
    path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "h.db"
    options = ["--storage", f"sqlite:///{db}", "--workers", "3", "--devices", "cpu", "--quiet"]
    done = subprocess.run(
        hpo("--log-level", "info", "run", str(path), *options),
        capture_output=True,
        text=True,
        timeout=300,
    )
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    errors = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert done.returncode == 2 and len(errors) == 1 and "seed" in errors[0], done.stderr
    pids = [
        int(r["message"].split("(pid ")[1].split(")")[0]) for r in records if "started worker" in r["message"]
    ]
    assert len(pids) == 2, done.stderr  # workers 1 and 2, started before the spec was read
    assert not db.exists()
    time.sleep(0.5)
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
        )


def _child(script: str, tmp_path: Path, index: int) -> Worker:
    """A child that writes ``ready`` once its SIGTERM handler is in place, as a worker's stderr file would hold."""
    err = (tmp_path / f"err{index}").open("w+")
    ready = tmp_path / f"ready{index}"
    code = (
        f"import signal, sys, time, pathlib\n{script}\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=err, text=True)
    deadline = time.time() + 30
    while not ready.exists():
        assert time.time() < deadline
        time.sleep(0.05)
    return Worker(proc, err, index)


def test_stopping_workers_reports_a_child_that_did_not_stop_cleanly(tmp_path: Path) -> None:
    """The parent's one line says every child re-queued its work only when each ended by the SIGTERM it was sent;
    a child that crashed while stopping (its error only in its stderr file) is named with its last line."""
    clean = """
def stop(signum, frame):
    print("interrupted: trial 3 of s/a re-queued; run again to resume", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)
signal.signal(signal.SIGTERM, stop)"""
    crash = """
def stop(signum, frame):
    raise UnboundLocalError("cannot access local variable 'updated_state'")
signal.signal(signal.SIGTERM, stop)"""
    both = [_child(clean, tmp_path, 1), _child(crash, tmp_path, 2)]
    unclean = stop_workers(both)
    assert [w.proc.returncode for w in both] == [-signal.SIGTERM, 1]
    assert len(unclean) == 1 and unclean[0].startswith("worker 2 exited with code 1: UnboundLocalError")
    line = stopped_line(2, unclean, "trial")
    assert line.startswith("interrupted: 2 workers stopped, not all cleanly (worker 2 exited with code 1")
    assert "\n" not in line and "stale heartbeat" in line
    assert stop_workers([_child(clean, tmp_path, 3)]) == []
    assert stopped_line(1, [], "work").startswith("interrupted: 1 worker stopped, each re-queued its work")
