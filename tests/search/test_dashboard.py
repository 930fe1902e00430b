from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo.cli import main
from tests.browser import dump_dom, screenshot
from tests.search.conftest import make_study


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.browser
def test_dashboard_lists_our_studies_in_chromium(tmp_path: Path) -> None:
    path = make_study(tmp_path)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["run", str(path), "--storage", url, "--n-trials", "2", "--devices", "cpu", "--quiet"]) == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the dashboard did not start")
        # bound to loopback only
        assert proc.poll() is None
        dom = dump_dom(f"http://127.0.0.1:{port}/dashboard")
        name = path.stem
        assert f"{name}/mmoe" in dom and f"{name}/shared_bottom" in dom
        shot = screenshot(f"http://127.0.0.1:{port}/dashboard", tmp_path / "dashboard.png")
        assert shot.stat().st_size > 10_000
        Path("reports").mkdir(exist_ok=True)
        (Path("reports") / "test-dashboard.png").write_bytes(shot.read_bytes())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
