"""``hpo validate``: check a study, search-space or dataset file, reporting every problem at once.

For a study, each architecture's search space is sampled (its corners, where the budget is tightest, plus random
points) and every configuration is built on the meta device, so an over-budget or invalid proposal is found
before any trial runs.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.config.space import SearchSpace, load_space
from hpo.config.study import ArchitectureSpec, StudySpec, load_study
from hpo.data.sources import FileSource
from hpo.errors import BudgetError, ConfigError, DataError, HpoError
from hpo.models import INPUT_SETTINGS, InputSpec, TaskSpec, probe_model
from hpo.yamlio import read_yaml

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
    """Build every corner and ``samples`` random configurations of ``space`` for ``arch`` on the meta device.

    A cause shared by several configurations is one problem, with its count and the first configuration that
    showed it; a configuration over the budget also names the parameters whose lower bound would fit it (the
    upper bounds to lower)."""
    spec = InputSpec(n_continuous=4, cardinalities=(3, 5))
    tasks = [TaskSpec(f"t{i}") for i in range(n_tasks)]
    causes: dict[str, tuple[int, Any, str]] = {}
    max_units = 0
    configs = _configurations(space, samples, seed)

    def build(cfg: dict[str, Any]) -> Any:
        return probe_model(arch, spec, tasks, budget=budget, **space.derive(cfg, n_tasks))

    for cfg in configs:
        try:
            model = build(cfg)
            max_units = max(max_units, max(u.units for u in model.layer_units()))
        except HpoError as exc:
            kind = re.sub(r"\d+", "#", str(exc))  # one cause whatever the sizes it names
            count, first, hint = causes.get(kind, (0, cfg, ""))
            if not count:
                first, hint = (
                    (cfg, str(exc)),
                    _levers(space, cfg, build) if isinstance(exc, BudgetError) else "",
                )
            causes[kind] = (count + 1, first, hint)
    problems = [
        f"{space.source or arch}: {count} of {len(configs)} sampled configurations fail, e.g. {first[0]}: "
        f"{first[1]}{hint}"
        for count, first, hint in causes.values()
    ]
    return SpaceReport(arch, len(configs), max_units, problems)


def _levers(space: SearchSpace, cfg: dict[str, Any], build: Callable[[dict[str, Any]], Any]) -> str:
    """The numeric parameters whose low value alone brings an over-budget configuration within the budget."""
    fits = []
    for name, r in space.params.items():
        if r.type not in ("int", "float") or r.low is None or cfg.get(name) == r.low:
            continue
        low = int(r.low) if r.type == "int" else float(r.low)
        try:
            build({**cfg, name: low})
        except HpoError:
            continue
        fits.append(name)
    if not fits:
        return "; no single parameter at its low bound fits: lower the upper bounds of several"
    return f"; lower the upper bound of {' or '.join(fits)}"


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
    known = set(TrainConfig.model_fields) | set(INPUT_SETTINGS)
    unknown = sorted(set(opt.params) - known)
    if unknown:
        return [f"{opt.source}: {unknown} are not training settings; known: {sorted(known)}"]
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
        from hpo.search.tickets import tickets_of

        try:
            grid = f", grid of {tickets_of(spec, arch.name, None)[0]} points"
        except HpoError as exc:
            problems.append(str(exc))
    if spec.retrain.default:
        problems += _default_problems(spec, arch.name, n_tasks)
    from hpo.config.shipped import shipped_root

    root = shipped_root()
    path = spec.space_path(arch)
    shipped = not arch.search_space and root is not None and path.is_relative_to(root / "search_spaces")
    where = f"the shipped {path.name}" if shipped else str(path)
    line = (
        f"  {arch.name}: {rep.configurations} configurations built, max {rep.max_units} units per layer "
        f"(budget {spec.budget}){grid}; space: {where}"
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
    return [head, *lines, *_seed_warning(spec, n_tasks)]


def _seed_warning(spec: StudySpec, n_tasks: int, alpha: float = 0.05) -> list[str]:
    """A warning when the retraining's seeds cannot separate any pair at the report's level: the smallest
    Mann-Whitney p they can give, Holm-corrected over every pair of architectures and task, is not below it."""
    from hpo.estimators import smallest_corrected_p

    archs = len(spec.architectures)
    family = archs * (archs - 1) // 2 * max(1, n_tasks)
    if archs < 2:
        return []
    n = spec.retrain.seeds
    floor = smallest_corrected_p(n, n, family)
    if floor < alpha:
        return []
    enough = next((k for k in range(n + 1, 401) if smallest_corrected_p(k, k, family) < alpha), None)
    more = f"; {enough} seeds per architecture can" if enough else ""
    return [
        f"warning: {spec.source}: retrain.seeds {n} cannot separate any pair: the smallest corrected p they can "
        f"give is {floor:.2g} (Mann-Whitney, Holm over {family} pairs and tasks), not below {alpha}{more}"
    ]


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
