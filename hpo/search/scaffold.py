"""``hpo init DIR``: a study folder of one's own, outside any checkout, that validates and runs as written.

It holds ``study.yaml`` (Single-Task, Shared-Bottom and MMoE, the GP sampler, a CPU-sized budget), copies of the
shipped search spaces it uses (the small ones, at most 256 units per layer, so the first run takes minutes on a
laptop; the comments say where the full 2048-unit spaces are) and a README with the commands, in order. The copies
are the user's to edit: a study names its spaces explicitly, so later hpo versions never change it underneath.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from hpo.config.shipped import shipped_root
from hpo.config.study import load_study
from hpo.errors import ConfigError

__all__ = ["DATASETS", "init_study"]

DATASETS = ("synthetic", "census-income")
ARCHITECTURES = ("single_task", "shared_bottom", "mmoe")

README = """# {name}

A study written by `hpo init`: {what}, tuned under one hidden-unit budget and compared over seeds.

```bash
hpo validate study.yaml                            # every problem at once, before anything runs
hpo run      study.yaml --storage sqlite:///{name}.db   # tune (rerun to resume; --workers N for more)
hpo retrain  study.yaml --storage sqlite:///{name}.db   # retrain each best configuration over many seeds
hpo report   study.yaml --storage sqlite:///{name}.db --out reports/{name}.html
hpo dashboard --storage sqlite:///{name}.db             # watch it live in optuna-dashboard
```

Edit `study.yaml` (trials, seeds, architectures) and the spaces in `search_spaces/` (ranges; the small spaces
allow at most 256 units per layer; `hpo validate` on a space file checks it alone). `hpo models` lists every
architecture and its tunable hyperparameters.
"""


def _dataset(kind: str) -> tuple[dict[str, object], str]:
    if kind == "synthetic":
        return (
            {
                "kind": "synthetic",
                "p": 0.7,
                "d": 16,
                "n_train": 4000,
                "n_valid": 1000,
                "n_test": 1000,
                "seed": 0,
            },
            "two synthetic regression tasks of correlation 0.7 (the MMoE paper's generator)",
        )
    if kind == "census-income":
        return (
            {"kind": "census-income", "group": 1},
            "UCI census-income, income > 50K and never married (the MMoE paper's group 1; `hpo data fetch "
            "census-income` downloads it)",
        )
    path = Path(kind).expanduser().resolve()
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise ConfigError(
            f"--dataset {kind}: allowed: {', '.join(DATASETS)} or the path of a dataset YAML file "
            f"(tried {path})"
        )
    return {"kind": "file", "path": str(path)}, f"the tables described by {path}"


def init_study(folder: str | Path, dataset: str = "synthetic") -> list[Path]:
    """Write the study folder; refuse to overwrite anything. Returns the files written."""
    root = Path(folder).expanduser().resolve()
    shipped = shipped_root()
    if shipped is None:
        raise ConfigError(
            "this hpo installation ships no search spaces (hpo/shipped is missing): reinstall hpo"
        )
    data, what = _dataset(dataset)
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in root.name) or "study"
    study = root / "study.yaml"
    if study.exists():
        raise ConfigError(f"{study}: already exists; choose another folder or remove it")
    (root / "search_spaces").mkdir(parents=True, exist_ok=True)
    written = []
    for space in (*ARCHITECTURES, "optimizer"):
        target = root / "search_spaces" / f"{space}.yaml"
        if not target.exists():
            shutil.copyfile(shipped / "search_spaces" / "small" / f"{space}.yaml", target)
            written.append(target)
    spec = {
        "name": name,
        "dataset": data,
        "architectures": [{"name": a, "search_space": f"search_spaces/{a}.yaml"} for a in ARCHITECTURES],
        "optimizer_space": "search_spaces/optimizer.yaml",
        "objective": {"kind": "main"},
        "sampler": {"name": "gp", "seed": 0, "options": {"n_startup_trials": 4}},
        "trials": 10,
        "seed": 0,
        "training": {"epochs": 4, "patience": 2, "batch_size": 1024, "device": "auto"},
        "retrain": {"seeds": 10},
    }
    header = (
        f"# Written by `hpo init`. Data: {what}.\n"
        "# The spaces are the small ones (at most 256 units per layer); the full 2048-unit spaces are in\n"
        f"# {shipped / 'search_spaces'}; with them, tune until settled: trials: {{min: 10, max: 60, until: settled}}\n"
    )
    study.write_text(header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=110))
    readme = root / "README.md"
    if not readme.exists():
        readme.write_text(README.format(name=name, what=what))
        written.append(readme)
    load_study(study)  # what it wrote must load: a bug here is hpo's, not the user's
    return [study, *written]
