"""An installed hpo, outside the repository: the wheel carries the spaces, studies and examples, and `hpo init`
writes a study folder that validates, runs, retrains and reports as written."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment in a temporary folder with the wheel built from this checkout installed in
    it. Its dependencies (torch, optuna, ...) are this environment's, reached through a path file that names
    their folder without running that folder's own path files, so the checkout's editable hook stays out."""
    tmp = tmp_path_factory.mktemp("installed")
    wheels = tmp / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        timeout=600,
        cwd=tmp,
    )
    (wheel,) = wheels.glob("hpo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("hpo/shipped/search_spaces/mmoe.yaml", "hpo/shipped/search_spaces/small/mmoe.yaml",
                    "hpo/shipped/studies/demo.yaml", "hpo/shipped/examples/plugins/fused_mmoe.py"):  # fmt: skip
        assert shipped in names, shipped
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    target = next((venv / "lib").glob("python3*/site-packages"))
    (target / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q",
         str(wheel)],
        check=True,
        timeout=600,
    )  # fmt: skip
    return venv


def _hpo(venv: Path, cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPO_STORAGE")}
    done = subprocess.run(
        [str(venv / "bin" / "hpo"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_the_wheel_runs_a_study_of_its_own_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import hpo, hpo.config.shipped as s; print(hpo.__file__); "
         "print(s.shipped_root())"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(str(installed) in w for w in where), where  # the installed package and its own shipped data
    out = _hpo(installed, tmp_path, "init", "mine")
    assert "next: hpo validate" in out
    study = tmp_path / "mine" / "study.yaml"
    assert "ok (3 architectures, 2 tasks)" in _hpo(installed, tmp_path, "validate", str(study))
    url = f"sqlite:///{tmp_path / 'mine' / 'mine.db'}"
    quick = {"run": ["--n-trials", "2"], "retrain": ["--seeds", "2"]}
    for step, extra in quick.items():
        _hpo(installed, tmp_path, step, str(study), "--storage", url, *extra, "--devices", "cpu", "--quiet")
    _hpo(
        installed,
        tmp_path,
        "report",
        str(study),
        "--storage",
        url,
        "--out",
        str(tmp_path / "mine" / "r.html"),
    )
    assert '<section id="verdict">' in (tmp_path / "mine" / "r.html").read_text()
    # a study that names architectures without spaces uses the shipped ones
    bare = tmp_path / "bare.yaml"
    bare.write_text(
        "name: bare\ndataset: {kind: synthetic, p: 0.5, d: 8, n_train: 300, n_valid: 100, n_test: 100}\n"
        "architectures: [shared_bottom]\ntrials: 2\n"
    )
    assert "space: the shipped shared_bottom.yaml" in _hpo(
        installed, tmp_path, "validate", str(bare), "--samples", "5"
    )
