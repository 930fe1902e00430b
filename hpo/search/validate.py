"""``hpo validate``: check a study, search-space or dataset file, reporting every problem at once.

For a study, each architecture's search space is sampled (its corners, where the budget is tightest, plus random
points) and every configuration is built on the meta device, so an over-budget or invalid proposal is found
before any trial runs.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.config.space import SearchSpace, load_space
from hpo.config.study import ArchitectureSpec, StudySpec, load_study
from hpo.config.yamlio import read_yaml
from hpo.data.sources import FileSource
from hpo.errors import ConfigError, DataError, HpoError
from hpo.models import InputSpec, TaskSpec, probe_model

__all__ = ["SpaceReport", "check_space", "validate_file"]

MAX_CORNERS = 4096


@dataclass
class SpaceReport:
    architecture: str
    configurations: int
    max_units: int
    problems: list[str]


def _configurations(space: SearchSpace, samples: int, seed: int) -> list[dict[str, Any]]:
    names = list(space.params)
    corners = list(
        itertools.islice(itertools.product(*(space.params[n].extremes() for n in names)), MAX_CORNERS)
    )
    out = [dict(zip(names, c, strict=True)) for c in corners]
    rng = random.Random(seed)
    out += [{n: space.params[n].random(rng) for n in names} for _ in range(samples)]
    return out


def check_space(
    space: SearchSpace, arch: str, n_tasks: int, *, budget: int = 2048, samples: int = 200, seed: int = 0
) -> SpaceReport:
    """Build every corner and ``samples`` random configurations of ``space`` for ``arch`` on the meta device."""
    spec = InputSpec(n_continuous=4, cardinalities=(3, 5))
    tasks = [TaskSpec(f"t{i}") for i in range(n_tasks)]
    problems: list[str] = []
    max_units = 0
    configs = _configurations(space, samples, seed)
    for cfg in configs:
        try:
            hyper = space.derive(cfg, n_tasks)
            model = probe_model(arch, spec, tasks, budget=budget, **hyper)
            max_units = max(max_units, max(u.units for u in model.layer_units()))
        except HpoError as exc:
            msg = f"{space.source or arch}: sampled {cfg} -> {exc}"
            if msg not in problems:
                problems.append(msg)
            if len(problems) >= 5:
                break
    return SpaceReport(arch, len(configs), max_units, problems)


def _dataset_lines(spec: StudySpec) -> tuple[int, list[str], list[str]]:
    """Load the study's dataset as a run would (cached), so that a misspelled column, a non-number or a split
    with one class fails here, before any trial: its task count, summary lines and problems."""
    from hpo.data.checks import summary_lines
    from hpo.data.sources import load_source

    try:
        ds = load_source(spec.dataset, spec.base_dir)
    except DataError as exc:
        n_tasks = 2
        if isinstance(spec.dataset, FileSource):
            try:
                raw = read_yaml(spec.base_dir / spec.dataset.path, DataError)
                n_tasks = max(1, len(raw.get("tasks") or []))
            except HpoError:
                pass
        return n_tasks, [], [str(exc)]
    first, *rest = summary_lines(ds.info())
    return len(ds.tasks), [f"  dataset {first}", *(f"  {line}" for line in rest)], []


def _validate_space_file(path: Path, samples: int) -> list[str]:
    space = load_space(path)
    arch = space.architecture
    if arch is None:
        return [f"{path}: optimiser space ok ({', '.join(space.params)})"]
    rep = check_space(space, arch, 2, samples=samples)
    if rep.problems:
        raise ConfigError("; ".join(rep.problems))
    return [
        f"{path}: {arch} ok: {rep.configurations} configurations built, max {rep.max_units} units per layer"
    ]


def _optimizer_problems(spec: StudySpec) -> list[str]:
    from hpo.config.training import TrainConfig

    try:
        opt = spec.optimizer_space_loaded()
    except HpoError as exc:
        return [str(exc)]
    unknown = sorted(set(opt.params) - set(TrainConfig.model_fields))
    if unknown:
        return [
            f"{opt.source}: {unknown} are not training settings; known: {sorted(TrainConfig.model_fields)}"
        ]
    return []


def _architecture_line(
    spec: StudySpec, arch: ArchitectureSpec, n_tasks: int, samples: int
) -> tuple[str, list[str]]:
    """The summary line of one architecture of a study, and its problems."""
    try:
        space = load_space(spec.space_path(arch))
    except HpoError as exc:
        return "", [str(exc)]
    rep = check_space(space, arch.name, n_tasks, budget=spec.budget, samples=samples, seed=spec.seed)
    problems, grid = list(rep.problems), ""
    if spec.sampler.name == "grid":
        from hpo.search.runner import tickets_of

        try:
            grid = f", grid of {tickets_of(spec, arch.name, None)[0]} points"
        except HpoError as exc:
            problems.append(str(exc))
    if spec.retrain.default:
        problems += _default_problems(spec, arch.name, n_tasks)
    line = (
        f"  {arch.name}: {rep.configurations} configurations built, max {rep.max_units} units per layer "
        f"(budget {spec.budget}){grid}"
    )
    return line, problems


def _default_problems(spec: StudySpec, arch: str, n_tasks: int) -> list[str]:
    """``retrain.default`` retrains the architecture's constructor defaults: they must fit the study's budget."""
    from hpo.models import get_entry

    hyper = {p.name: p.default for p in get_entry(arch).params}
    try:
        probe_model(arch, InputSpec(n_continuous=4, cardinalities=(3, 5)), [TaskSpec(f"t{i}") for i in range(n_tasks)],
                    budget=spec.budget, **hyper)  # fmt: skip
    except HpoError as exc:
        return [f"{spec.source}: retrain.default: {arch}'s default configuration {hyper} -> {exc}"]
    return []


def _validate_study(path: Path, samples: int) -> list[str]:
    spec = load_study(path)
    n_tasks, lines, problems = _dataset_lines(spec)
    problems += _optimizer_problems(spec)
    for arch in spec.architectures:
        line, found = _architecture_line(spec, arch, n_tasks, samples)
        problems += found
        if line:
            lines.append(line)
    if problems:
        raise ConfigError("; ".join(problems))
    head = f"{path}: study {spec.name} ok ({len(spec.architectures)} architectures, {n_tasks} tasks)"
    if spec.sweep is not None:
        names = ", ".join(s.name for s in spec.expand())
        head += f"; sweep over {spec.sweep.key}: {len(spec.sweep.values)} studies ({names})"
    if spec.replicates > 1:
        subs = spec.expand()
        head += f"; {spec.replicates} tuning replicates ({subs[0].name} .. {subs[-1].name})"
    if (cross := spec.retrain.cross) is not None:
        head += (
            f"; retrain crossed: {cross.init} init x {cross.data} data order x {cross.splits} held-out splits "
            f"= {spec.retrain.seeds} seeds"
        )
    if spec.retrain.default:
        head += f"; default configurations retrained as {spec.default_spec().name}"
    return [head, *lines]


def validate_file(path: str | Path, *, samples: int = 200) -> list[str]:
    """Validate ``path``; return the lines to print, or raise one :class:`ConfigError` with every problem."""
    path = Path(path)
    raw = read_yaml(path)
    if "tasks" in raw and "architectures" not in raw:
        from hpo.data.checks import summary_lines
        from hpo.data.user import load_user_dataset

        ds = load_user_dataset(path)
        return [f"{path}: dataset ok", *(f"  {line}" for line in summary_lines(ds.info()))]
    if "architectures" not in raw:
        return _validate_space_file(path, samples)
    return _validate_study(path, samples)
