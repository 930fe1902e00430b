"""Headless Chromium (Debian's package) for the tests of every HTML page we ship."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import require

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        require("HPO_REQUIRE_BROWSER", "Debian's chromium is not installed (make test installs it as root)")
    assert path is not None
    return path


def run_chromium(
    url: str, *extra: str, budget_ms: int = 15000, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *extra,
            url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def dump_dom(url: str, **kw: object) -> str:
    return run_chromium(url, "--dump-dom", **kw).stdout  # type: ignore[arg-type]


def screenshot(url: str, out: Path, size: str = "1400,1000", **kw: object) -> Path:
    run_chromium(url, f"--screenshot={out}", f"--window-size={size}", **kw)  # type: ignore[arg-type]
    return out
