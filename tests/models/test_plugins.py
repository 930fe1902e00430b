"""Bring your own architecture: the worked examples (both routes) as a user runs them, the registry-driven checks
over plugin models, and every mistake a plugin author can make, each one line before any database exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from hpo.cli import main
from hpo.config.space import load_space
from hpo.errors import ConfigError
from hpo.models import create_model, get_entry, load_plugins
from hpo.search.validate import check_space
from hpo.training import TrainConfig, train
from tests.models.test_zoo import SPEC, TASKS, features
from tests.training.test_trainer import small_synthetic

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugins"
PLUGINS = ["my_mmoe_fused", "my_mmoe_module"]
SMALL = {"n_experts": 3, "expert_units": 6, "tower_units": 4}


@pytest.fixture(scope="module", autouse=True)
def example_plugins() -> dict[str, str]:
    return load_plugins(["fused_mmoe.py", "module_mmoe.py"], EXAMPLE)


def test_plugins_register_with_their_origin_and_route(example_plugins: dict[str, str]) -> None:
    fused, module = get_entry("my_mmoe_fused"), get_entry("my_mmoe_module")
    assert fused.route == "fused" and module.route == "module"
    assert fused.origin.startswith(f"plugin file {EXAMPLE / 'fused_mmoe.py'} (sha256 ")
    assert example_plugins["module_mmoe.py"] == module.origin
    assert [p.name for p in module.params] == ["n_experts", "expert_units", "tower_units"]
    assert load_plugins(["fused_mmoe.py"], EXAMPLE)["fused_mmoe.py"] == fused.origin  # loading again: a no-op


@pytest.mark.parametrize("name", PLUGINS)
def test_shapes_finite_and_every_parameter_learns(name: str) -> None:
    model = create_model(name, SPEC, TASKS, replicas=2, seeds=[0, 1], **SMALL)
    out = model(features(2, 16, dtype=torch.float32))
    assert out.shape == (2, 16, len(TASKS)) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", PLUGINS)
def test_budget_is_respected_over_sampled_configurations(name: str) -> None:
    space = load_space(EXAMPLE / "spaces" / f"{name}.yaml")
    report = check_space(space, name, len(TASKS), samples=40)
    assert report.problems == [] and 0 < report.max_units <= 2048
    with pytest.raises(ConfigError, match=rf"{name}: hidden layer 1 has 2100 units"):
        create_model(name, SPEC, TASKS, n_experts=7, expert_units=300)


def test_hidden_units_are_traced_from_the_modules_layers() -> None:
    kw = {"n_experts": 4, "expert_units": 8, "tower_units": 3}
    traced = create_model("my_mmoe_module", SPEC, TASKS, **kw).layer_units()
    fused = create_model("my_mmoe_fused", SPEC, TASKS, **kw).layer_units()
    assert [(u.depth, u.units) for u in traced] == [(1, 32), (2, 9)]  # experts, then 3 towers' hidden layers
    assert [(u.depth, u.units) for u in traced] == [(u.depth, u.units) for u in fused]


def test_any_module_replica_equals_a_lone_model_with_its_seed() -> None:
    x = features(1, 6, dtype=torch.float64)
    many = create_model(
        "my_mmoe_module", SPEC, TASKS, replicas=3, seeds=[7, 8, 9], dtype=torch.float64, **SMALL
    )
    out = many(x)
    for r, s in enumerate([7, 8, 9]):
        lone = create_model("my_mmoe_module", SPEC, TASKS, seeds=[s], dtype=torch.float64, **SMALL)
        torch.testing.assert_close(out[r], lone(x)[0], rtol=1e-12, atol=1e-12)
    many.select_replicas([2, 0])
    torch.testing.assert_close(many(x), out[[2, 0]], rtol=1e-12, atol=1e-12)


def test_any_module_replicas_train_exactly_like_lone_runs() -> None:
    """Through a few hundred optimiser steps (and early stopping), replica r equals a lone run with its seed."""
    ds = small_synthetic(torch.float64, n=800)
    cfg = TrainConfig(lr=3e-3, batch_size=32, epochs=6, patience=2, device="cpu")
    tasks = ds.tasks
    seeds = [3, 4, 5]
    many = create_model(
        "my_mmoe_module", ds.spec, tasks, replicas=3, seeds=seeds, dtype=torch.float64, **SMALL
    )
    res = train(many, ds, cfg, init_seeds=seeds, data_seeds=seeds)
    for r, s in enumerate(seeds):
        lone = create_model("my_mmoe_module", ds.spec, tasks, seeds=[s], dtype=torch.float64, **SMALL)
        (lres,) = train(lone, ds, cfg, init_seeds=[s], data_seeds=[s])
        assert res[r].best_epoch == lres.best_epoch
        assert res[r].metric("test", "y1", "mse") == pytest.approx(lres.metric("test", "y1", "mse"), rel=1e-9)


def copy_example(tmp_path: Path) -> Path:
    target = tmp_path / "elsewhere"
    shutil.copytree(EXAMPLE, target)
    return target / "study.yaml"


def hpo(*args: str, cwd: Path) -> str:
    """The installed ``hpo`` command in a fresh process, as a user runs it (no plugin loaded beforehand)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "hpo"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_run_retrain_report_from_a_directory_outside_the_repository(tmp_path: Path) -> None:
    study = copy_example(tmp_path)
    url = f"sqlite:///{tmp_path / 'plugins.db'}"
    hpo("run", "study.yaml", "--storage", url, "--n-trials", "2", cwd=study.parent)
    hpo("retrain", "study.yaml", "--storage", url, "--seeds", "3", cwd=study.parent)
    hpo("report", "study.yaml", "--storage", url, "--out", str(tmp_path / "report.html"), cwd=study.parent)
    html = (tmp_path / "report.html").read_text()
    for name, file in (("my_mmoe_fused", "fused_mmoe.py"), ("my_mmoe_module", "module_mmoe.py")):
        assert f"{name}: plugin file {study.parent / file} (sha256 " in html
    table = pd.read_csv(tmp_path / "report_comparison.csv")
    assert sorted(table.architecture.unique()) == PLUGINS and set(table.seeds) == {3}


def plugin_study(tmp_path: Path, source: str, arch: str = "bad", space: dict | None = None) -> Path:
    """A study of one plugin architecture ``arch``; ``{name}`` in ``source`` becomes ``arch``."""
    (tmp_path / "bad.py").write_text(textwrap.dedent(source).replace("{name}", arch))
    space = space or {
        "architecture": arch,
        "params": {"n": {"type": "int", "low": 1, "high": 4}},
        "model": {"n": "n"},
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    (tmp_path / "opt.yaml").write_text(
        yaml.safe_dump({"params": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}}})
    )
    study = yaml.safe_load((EXAMPLE / "study.yaml").read_text())
    study.update(
        name="bad",
        plugins=["bad.py"],
        architectures=[{"name": arch, "search_space": "space.yaml"}],
        optimizer_space="opt.yaml",
    )
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


HEADER = """
from torch import nn
import torch
from hpo.models.api import register_module
"""
MODULE = (
    HEADER
    + """
@register_module("{name}", "a test plugin", {{"n": "size"}})
class Bad(nn.Module):
    def __init__(self, spec, tasks, *, n: int = 2):
        super().__init__()
        {init}
        self.hidden = nn.Linear(spec.n_continuous, 8 * n)
        self.head = nn.Linear(8 * n, len(tasks))
    def forward(self, x):
        {forward}
"""
)


def module_source(
    name: str = "{name}",
    init: str = "pass",
    forward: str = "return self.head(torch.relu(self.hidden(x.cont)))",
) -> str:
    return MODULE.format(name=name, init=init, forward=forward)


@pytest.mark.parametrize(
    ("source", "arch", "expected"),
    [
        (
            HEADER + "raise RuntimeError('cannot reach the GPU cluster')\n",
            "bad",
            "bad.py failed to import: RuntimeError: cannot reach the GPU cluster",
        ),
        (HEADER + "def broken(:\n", "bad", "bad.py failed to import: SyntaxError: "),
        (
            module_source(name="mmoe"),
            "mmoe",
            "model name 'mmoe' clashes with a built-in architecture; register it under another name",
        ),
        (
            module_source(init="assert n != 3, f'n={n} is not supported'"),
            "bad",
            "{'n': 3} rejected: AssertionError: n=3 is not supported",
        ),
        (
            module_source(forward="return self.head(torch.relu(self.hidden(x.cont)))[:, :1]"),
            "bad",
            "Bad.forward returned a tensor of shape (3, 1); expected a (batch, 2) tensor",
        ),
        (
            module_source(init="self.scale = nn.Parameter(torch.ones(3))"),
            "bad",
            "are not; declare `def hidden_units(self) -> list[int]`",
        ),
    ],
    ids=[
        "import-error",
        "syntax-error",
        "name-clash",
        "rejected-hyperparameter",
        "wrong-output",
        "uncountable",
    ],
)
def test_plugin_mistakes_are_one_line_before_any_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, arch: str, expected: str
) -> None:
    arch = arch if arch == "mmoe" else f"bad_{uuid.uuid4().hex[:8]}"  # one process registers every case
    study = plugin_study(tmp_path, source, arch)
    db = tmp_path / "never.db"
    for command in (
        ["validate", str(study), "--samples", "30"],
        ["run", str(study), "--storage", f"sqlite:///{db}"],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0], err
    assert not db.exists()


def test_an_over_budget_plugin_configuration_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = {
        "architecture": "wide",
        "params": {"n": {"type": "int", "low": 200, "high": 300}},
        "model": {"n": "n"},
    }
    study = plugin_study(tmp_path, module_source(name="wide"), "wide", space)
    assert main(["validate", str(study), "--samples", "5"]) == 2
    assert "wide: hidden layer 1 has 2400 units (hidden 1x2400), over the budget" in capsys.readouterr().err
    assert main(["run", str(study), "--storage", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    err = capsys.readouterr().err
    assert "over the budget of 2048 units per layer" in err and not (tmp_path / "x.db").exists()


def test_a_worker_refuses_edited_plugin_code(tmp_path: Path) -> None:
    from hpo.config.study import StudySpec, load_study

    study = copy_example(tmp_path)
    stored = load_study(study).resolved()
    assert set(stored["plugin_origins"]) == {"fused_mmoe.py", "module_mmoe.py"}
    with (study.parent / "module_mmoe.py").open("a") as f:
        f.write("\n# an edit after tuning\n")
    with pytest.raises(ConfigError, match="plugin module_mmoe.py is not the code the study was created with"):
        StudySpec.from_stored(stored)


def test_an_installed_package_registers_through_the_entry_point_group(tmp_path: Path) -> None:
    """A real distribution on sys.path (dist-info with entry_points.txt), in a fresh interpreter."""
    (tmp_path / "acme_mtl.py").write_text(module_source(name="acme"))
    info = tmp_path / "acme_mtl-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-mtl\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[hpo.models]\nacme = acme_mtl\n")
    (info / "top_level.txt").write_text("acme_mtl\n")
    code = "from hpo.models import get_entry; e = get_entry('acme'); print(e.route, '|', e.origin)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    assert out == "module | entry point acme (package acme-mtl 1.2.3)"


def test_models_command_lists_plugins_with_origin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "extra.py").write_text(module_source(name="extra_model"))
    assert main(["models", "--json", "--plugin", str(tmp_path / "extra.py")]) == 0
    entries: list[dict[str, Any]] = __import__("json").loads(capsys.readouterr().out)
    by_name = {e["name"]: e for e in entries}
    assert by_name["adatt"]["origin"] == "built-in"
    assert by_name["my_mmoe_module"]["route"] == "module"
    assert by_name["extra_model"]["origin"].startswith(f"plugin file {tmp_path / 'extra.py'} (sha256 ")


def test_eval_mode_reaches_the_wrapped_module(tmp_path: Path) -> None:
    """Dropout inside a plain module must stop at evaluation, or every validation score would be noisy."""
    source = module_source(
        name="dropping",
        init="self.drop = nn.Dropout(0.5)",
        forward="return self.head(self.drop(torch.relu(self.hidden(x.cont))))",
    )
    (tmp_path / "dropping.py").write_text(textwrap.dedent(source))
    load_plugins(["dropping.py"], tmp_path)
    model = create_model("dropping", SPEC, TASKS[:2], replicas=2, seeds=[0, 1], n=2)
    x = features(2, 32, dtype=torch.float32)
    assert not torch.equal(model(x), model(x))  # training: a fresh mask per call (and per replica)
    model.eval()
    assert torch.equal(model(x), model(x))
