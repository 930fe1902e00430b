"""The main job (``make demo``) end to end on the real census data, and its report in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpo.demo import run_demo
from tests.browser import dump_dom
from tests.conftest import SHARED_DATA, require


@pytest.mark.slow
@pytest.mark.timeout(
    2400
)  # a hang guard: the demo takes about 7 minutes on 2 cores, 20+ beside other heavy work
@pytest.mark.browser
def test_demo_produces_a_report_that_renders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not (SHARED_DATA / "census-income").is_dir():
        require("HPO_REQUIRE_DATA", f"the census files are not in {SHARED_DATA} (HPO_DATA_DIR)")
    out = run_demo(
        storage=f"sqlite:///{tmp_path / 'demo.db'}",
        out=tmp_path / "demo.html",
        device="cpu",
        data_dir=str(SHARED_DATA),
        quiet=True,
    )
    printed = capsys.readouterr().out
    assert f"report: {out.resolve()}" in printed and "hpo dashboard --storage" in printed
    dom = dump_dom(out.as_uri(), budget_ms=20000)
    attrs = dict(re.findall(r'(data-[a-z-]+)="(\d+)"', re.search(r"<body[^>]*>", dom).group(0)))
    assert attrs["data-js-errors"] == "0" and attrs["data-rendered-plots"] == attrs["data-expected-plots"]
    for arch in ("shared_bottom", "mmoe", "ple"):
        assert arch in dom
    assert "income: test AUC" in dom and "marital: test AUC" in dom
