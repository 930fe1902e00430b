"""Study specifications (``studies/*.yaml``): what to tune, on which data, with which sampler, for how long.

Validation reports every problem of a file at once, on one line, naming the file and the field; search-space
files are resolved relative to the study file (default ``../search_spaces/<architecture>.yaml``).

.. code-block:: yaml

    name: smoke
    dataset: {kind: synthetic, p: 0.7, d: 16, n_train: 2000}   # or {kind: census-income, group: 1}
                                                                 # or {kind: file, path: my_table.yaml}
    architectures: [shared_bottom, mmoe]                         # or [{name: mmoe, search_space: x.yaml}]
    optimizer_space: ../search_spaces/optimizer.yaml
    objective: {kind: main, metric: auc}                         # main | mean | multi
    sampler: {name: gp, seed: 0, options: {n_startup_trials: 4}}
    pruner: {name: none}
    trials: 8                                                    # per architecture, or tune until settled:
                                                                 # {min: 10, max: 80, until: settled,
                                                                 #  tolerance: auto, grow: 0.5}
    timeout_minutes: null
    seed: 0
    budget: 2048
    training: {epochs: 5, patience: 2, batch_size: 256, device: auto}
    retrain: {seeds: 30, replicas_per_run: null, fresh_data: false, default: false}
                                                                 # or {cross: {init: 5, data: 5, splits: 1},
                                                                 #     default: true,
                                                                 #     select: {candidates: 3, seeds: 4}}
    replicates: 1                                                # independent tuning studies per architecture
                                                                 # ({name: mmoe, replicates: 3} per architecture,
                                                                 #  at most the study's)
    sweep: {key: p, values: [0.5, 0.9, 1.0]}                     # synthetic only: one sub-study per value

``sampler: {name: grid}`` runs every combination of the categorical choices of the search spaces once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from hpo.config.space import SearchSpace, load_space
from hpo.config.training import TrainConfig
from hpo.data.sources import DatasetSource
from hpo.data.synthetic import SyntheticConfig
from hpo.errors import ConfigError
from hpo.limits import MAX_REPLICATES, MAX_SEEDS, MAX_TRIALS
from hpo.yamlio import format_validation_error, read_yaml

__all__ = ["StudySpec", "TrialBudget", "changed_fields", "load_study", "sweep_value"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchitectureSpec(_Strict):
    """One architecture of a study: its name, its search space (default ``search_spaces/<name>.yaml``) and, with
    replicated tuning, how many of the study's replicates tune it (default all): a comparison can replicate the
    pair its claim rests on three times and the others once."""

    name: str
    search_space: str | None = None
    replicates: int | None = Field(None, ge=1, le=MAX_REPLICATES)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from hpo.models import list_models  # the registry, loaded only when a spec is validated

        known = [e.name for e in list_models()]
        if v not in known:
            raise ValueError(f"unknown architecture {v!r}; known: {', '.join(known)}")
        return v


class ObjectiveSpec(_Strict):
    """``main``: the first task's validation metric; ``mean``: the mean over tasks; ``multi``: one objective per
    task (a multi-objective study). ``metric`` defaults to AUC for binary tasks and MSE for regression."""

    kind: Literal["main", "mean", "multi"] = "main"
    metric: Literal["auc", "logloss", "mse", "r2"] | None = None
    task: str | None = None


class SamplerSpec(_Strict):
    """``grid`` runs every combination of the (categorical) choices of the search spaces once, one per ticket:
    the paper's learning-rate grid. The others are Optuna's samplers of the same names."""

    name: Literal["gp", "tpe", "random", "cmaes", "qmc", "grid"] = "gp"
    seed: int | None = Field(0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)
    # gp only: ``worst`` shows the GP each trial that learned nothing (at or near the objective's chance level) as
    # the worst trial that learned, since one such value otherwise swamps the differences it has to model
    # (hpo.search.collapse); ``raw`` shows it every value as stored. Not part of a study's definition: the
    # trials keep their values either way.
    collapsed: Literal["worst", "raw"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _collapsed_is_gp_only(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("name", "gp")
        if name == "gp" and data.get("collapsed") is None:
            return {**data, "collapsed": "worst"}
        if name != "gp" and data.get("collapsed") is not None:
            raise ValueError(
                f"sampler.collapsed applies to the gp sampler only (the sampler is {name}); remove it"
            )
        return data


class PrunerSpec(_Strict):
    name: Literal["none", "median", "hyperband", "successive_halving"] = "none"
    options: dict[str, Any] = Field(default_factory=dict)


class CrossSpec(_Strict):
    """A crossed retrain: every one of ``init`` initialisation seeds with every one of ``data`` data-order seeds
    (and, with ``splits`` > 1, every one of ``splits`` draws of the validation/test rows from their pool; split 0 is
    the dataset's own), so that the variance of the test score can be split between the sources (the report's
    variance section). Retrain seed ``s`` is split ``s // (init * data)``, then init and data order as
    ``divmod(s % (init * data), data)``."""

    init: int = Field(ge=2, le=MAX_SEEDS)
    data: int = Field(ge=2, le=MAX_SEEDS)
    splits: int = Field(1, ge=1, le=MAX_SEEDS)

    @property
    def cells(self) -> int:
        return self.init * self.data * self.splits


class TrialBudget(_Strict):
    """``trials: {min, max, until: settled}``: a tuning budget set by convergence, the same rule for every
    architecture (:mod:`hpo.search.settle`). Each architecture first runs ``min`` trials; then, whenever all its
    queued trials have finished, it stops if the expected best validation score gained less than ``tolerance``
    over the last doubling of trials, the whole 95% bootstrap interval of that gain included (so at least four
    finished trials; :func:`hpo.estimators.doubling_gain_interval`), and its best configuration is on no movable
    bound of its space, or if it has run ``max``; otherwise ``grow`` times as many trials again are queued
    (at least one, never past ``max``). ``tolerance: auto`` is the smallest difference the retraining can
    resolve: :func:`hpo.estimators.resolvable_gap` at ``retrain.seeds`` seeds and Holm over every pair of
    architectures, with the per-seed spread measured by training the best configuration so far with
    ``probe_seeds`` seeds once ``min`` trials are done. ``expand`` names parameters (of any of the study's
    spaces, or ``all`` numeric ones) whose range the rule may widen on a bound hit, as ``expand: true`` in their
    space would (:mod:`hpo.search.widen`): the study's choice, without editing spaces other studies share."""

    min: int = Field(ge=2, le=MAX_TRIALS)
    max: int = Field(ge=2, le=MAX_TRIALS)
    until: Literal["settled"] = "settled"
    tolerance: float | Literal["auto"] = "auto"
    grow: float = Field(0.5, gt=0, le=4)
    probe_seeds: int = Field(4, ge=2, le=64)
    expand: list[str] | Literal["all"] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> TrialBudget:
        if self.max < self.min:
            raise ValueError(f"trials.max ({self.max}) is below trials.min ({self.min})")
        if isinstance(self.tolerance, float) and self.tolerance < 0:
            raise ValueError(f"trials.tolerance must be >= 0 or auto, got {self.tolerance}")
        return self


class SelectSpec(_Strict):
    """``retrain.select``: which configuration is retrained is decided by more than one seed. The best
    ``candidates`` configurations of the tuning (by their tuning value, each trained once, from one seed) are each
    trained again on ``seeds`` fresh initialisation and data-order seeds (apart from every tuning and retrain seed,
    scored on the validation split, so the test split stays unseen), and the one with the best mean validation
    objective over those seeds is retrained (a seed that diverged counts at the objective's chance level). A
    configuration that trains from some starting weights and not from others scores its expected value here, not
    its luckiest: on census, tuning once handed the retraining a configuration that collapsed from 4 of 6
    initialisations."""

    candidates: int = Field(3, ge=2, le=20)
    seeds: int = Field(4, ge=2, le=64)


class RetrainSpec(_Strict):
    """``fresh_data``: every seed also draws its own dataset (synthetic data only), as the MMoE paper's synthetic
    experiments do ("fresh data and initialisation" per run); otherwise every seed trains on the same data.

    ``cross``: initialisation and data order are crossed (``seeds`` is then ``init x data``) instead of varying
    together. ``default``: each architecture's documented default configuration (its constructor's defaults and
    the study's ``training`` block) is retrained over the same seeds too, so the gain from tuning is visible."""

    seeds: int = Field(12, ge=1, le=MAX_SEEDS)
    replicas_per_run: int | None = Field(None, ge=1)
    fresh_data: bool = False
    cross: CrossSpec | None = None
    default: bool = False
    select: SelectSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _seeds_of_cross(cls, data: Any) -> Any:
        """With ``cross``, ``seeds`` is its product: left out, it is filled in; given, it must agree."""
        if isinstance(data, dict) and isinstance(cross := data.get("cross"), dict):
            init, dat, splits = cross.get("init"), cross.get("data"), cross.get("splits", 1)
            if isinstance(init, int) and isinstance(dat, int) and isinstance(splits, int):
                cells = init * dat * splits
                if "seeds" not in data:
                    return {**data, "seeds": cells}
                if data["seeds"] != cells:
                    raise ValueError(
                        f"seeds ({data['seeds']}) must equal cross.init x cross.data x cross.splits ({cells}) "
                        "or be left out"
                    )
        return data

    @model_validator(mode="after")
    def _cross_alone(self) -> RetrainSpec:
        if self.cross is not None and self.fresh_data:
            raise ValueError(
                "cross separates initialisation from data order on one dataset; it cannot be combined with "
                "fresh_data (which draws a dataset per seed)"
            )
        return self


def sweep_value(key: str, v: float) -> float | int:
    """A swept value as the generator takes it (and as sub-study names print it): counts are integers."""
    return int(v) if key in ("m", "d", "n_train", "seed") else float(v)


class SweepSpec(_Strict):
    """One sub-study per value of a synthetic generator setting (the paper's loss-against-correlation curves).

    Sub-study ``i`` is named ``NAME.<key><value>`` and is an ordinary study in every other respect."""

    key: Literal["p", "c", "m", "sine_scale", "noise", "d", "n_train", "seed"]
    values: list[float] = Field(min_length=1)
    # the equivalence margin of the report's findings: a loss "barely moves" across the sweep only when the 95%
    # interval of its change lies within +-flat_margin of its median at the top of the sweep (declared before the
    # runs, as an equivalence test needs)
    flat_margin: float = Field(0.10, gt=0, lt=1)
    # how each architecture's configuration is chosen: at every value on its own (``per_value``: the paper's
    # protocol, so a curve across the sweep may join different learning rates), or once for the whole sweep
    # (``pooled``: the grid point with the best validation objective averaged over every value, retrained at every
    # value, so a trend across the sweep is not a change of configuration)
    choose: Literal["per_value", "pooled"] = "per_value"


class StudySpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    plugins: list[str] = Field(default_factory=list)
    dataset: DatasetSource
    architectures: list[ArchitectureSpec] = Field(min_length=1)
    optimizer_space: str | None = None
    objective: ObjectiveSpec = Field(default_factory=lambda: ObjectiveSpec())
    sampler: SamplerSpec = Field(default_factory=lambda: SamplerSpec())
    pruner: PrunerSpec = Field(default_factory=lambda: PrunerSpec())
    trials: int | TrialBudget | None = 20
    timeout_minutes: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    budget: int = Field(2048, ge=1)
    training: TrainConfig = Field(default_factory=lambda: TrainConfig())
    retrain: RetrainSpec = Field(default_factory=lambda: RetrainSpec())
    sweep: SweepSpec | None = None
    sweep_point: dict[str, Any] | None = None  # set on the sub-studies of a sweep: {"of", "key", "value"}
    replicates: int = Field(1, ge=1, le=MAX_REPLICATES)
    replicate_point: dict[str, Any] | None = None  # set on a replicate's study: {"of", "index", "count"}
    source: str = ""
    # set only on a spec rebuilt from the copy stored on its studies (``from_stored``): the search spaces as they
    # were when the study was created, so workers never re-read YAML that may have changed since
    stored_spaces: dict[str, SearchSpace] | None = None
    stored_optimizer_space: SearchSpace | None = None

    @field_validator("trials", mode="before")
    @classmethod
    def _count_or_rule(cls, v: Any) -> Any:
        """A count (1 to MAX_TRIALS) or a ``{min, max, until: settled}`` rule, each with its own one-line error
        (a plain union would report both readings of every mistake)."""
        if isinstance(v, dict):
            try:
                return TrialBudget.model_validate(v)
            except ValidationError as exc:
                raise ValueError(format_validation_error("trials", exc).split(": ", 1)[-1]) from None
        if isinstance(v, int) and not isinstance(v, bool) and not 1 <= v <= MAX_TRIALS:
            op, bound = (
                ("less than or equal to", MAX_TRIALS) if v > MAX_TRIALS else ("greater than or equal to", 1)
            )
            raise PydanticCustomError(
                "count_range", "Input should be {op} {bound}", {"op": op, "bound": bound}
            )
        return v

    @field_validator("architectures", mode="before")
    @classmethod
    def _names_to_specs(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": a} if isinstance(a, str) else a for a in v]
        return v

    @model_validator(mode="before")
    @classmethod
    def _load_plugins(cls, data: Any) -> Any:
        """Import the study's plugins before its architecture names are checked against the registry."""
        if isinstance(data, dict) and data.get("plugins"):
            from hpo.models.plugins import load_plugins

            plugins = data["plugins"]
            if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
                raise ValueError(f"plugins must be a list of file paths or module names, got {plugins!r}")
            source = data.get("source") or ""
            try:
                load_plugins(plugins, Path(source).parent if source else Path.cwd())
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return data

    def plugin_origins(self) -> dict[str, str]:
        """Each plugin's origin (file and SHA-256, or package and version), as loaded in this process."""
        if not self.plugins:
            return {}
        from hpo.models.plugins import load_plugins

        return load_plugins(self.plugins, self.base_dir)

    @model_validator(mode="after")
    def _unique_and_bounded(self) -> StudySpec:
        names = [a.name for a in self.architectures]
        if len(set(names)) != len(names):
            raise ValueError(f"architectures are listed more than once: {names}")
        if self.trials is None and self.timeout_minutes is None and self.sampler.name != "grid":
            raise ValueError("give `trials` (per architecture), `timeout_minutes`, or both")
        if isinstance(self.trials, TrialBudget) and (
            self.objective.kind == "multi" or self.sampler.name == "grid"
        ):
            raise ValueError(
                "trials: {until: settled} needs one objective value and a sampler that proposes (not multi, not grid)"
            )
        if self.sweep is not None:
            if self.dataset.kind != "synthetic":
                raise ValueError(
                    f"`sweep` varies a synthetic generator setting; the dataset is {self.dataset.kind}"
                )
            if len(set(self.sweep.values)) != len(self.sweep.values):
                raise ValueError(f"sweep.values repeat a value: {self.sweep.values}")
            for v in self.sweep.values:
                try:
                    SyntheticConfig(**{**self.dataset.model_dump(), self.sweep.key: v})
                except ValidationError as exc:  # one line, turned into this file's field error by load_study
                    raise ValueError(format_validation_error(f"sweep value {v}", exc)) from None
        over = [
            f"{a.name} ({a.replicates})" for a in self.architectures if (a.replicates or 0) > self.replicates
        ]
        if over:
            raise ValueError(
                f"an architecture's replicates exceed the study's replicates ({self.replicates}): "
                f"{', '.join(over)}; set the study's replicates to the largest"
            )
        if self.replicates > 1 and self.sweep is not None:
            raise ValueError(
                "replicates repeat one study's tuning; with a sweep, give each sweep value its own study file"
            )
        if self.retrain.fresh_data and self.dataset.kind != "synthetic":
            raise ValueError("retrain.fresh_data draws a new dataset per seed: only for synthetic data")
        return self

    @model_validator(mode="after")
    def _select_fits(self) -> StudySpec:
        """``retrain.select`` ranks candidates by one validation objective, and is the only chooser."""
        if self.retrain.select is None:
            return self
        if self.sweep is not None and self.sweep.choose == "pooled":
            raise ValueError(
                "retrain.select and sweep.choose: pooled both decide which configuration is retrained; use one"
            )
        if self.objective.kind == "multi":
            raise ValueError(
                "retrain.select ranks configurations by one validation objective; objective.kind multi has "
                "several (use main or mean, or remove retrain.select)"
            )
        return self

    def expand(self) -> list[StudySpec]:
        """The studies this spec stands for: itself, one sub-study per value of its sweep, or one per replicate.

        Replicate ``r`` (1-based) is named ``NAME.rep<r>`` and differs from the others only in its seeds: the
        sampler's seed and the trials' training seeds are the spec's plus ``r - 1`` (so replicate 1 is the study
        the spec would be without replicates). Each is an ordinary study, shown on its own in the dashboard. An
        architecture with fewer replicates of its own is in the first ones only; ``family`` keeps the whole
        study's architectures, whose pairs the verdict (and a settled budget's tolerance) is corrected over."""
        if self.replicates > 1:
            return [
                self.model_copy(
                    update={
                        "name": f"{self.name}.rep{r}",
                        "replicates": 1,
                        "architectures": [
                            a for a in self.architectures if (a.replicates or self.replicates) >= r
                        ],
                        "replicate_point": {
                            "of": self.name,
                            "index": r,
                            "count": self.replicates,
                            "family": len(self.architectures),
                        },
                        "seed": self.seed + r - 1,
                        "sampler": self.sampler.model_copy(
                            update={"seed": None if self.sampler.seed is None else self.sampler.seed + r - 1}
                        ),
                    }
                )
                for r in range(1, self.replicates + 1)
            ]
        if self.sweep is None:
            return [self]
        out = []
        key = self.sweep.key
        for v in self.sweep.values:
            value = sweep_value(key, v)
            out.append(
                self.model_copy(
                    update={
                        "name": f"{self.name}.{key}{value:g}",
                        "dataset": self.dataset.model_copy(update={key: value}),
                        "sweep": None,
                        "sweep_point": {
                            "of": self.name,
                            "key": key,
                            "value": value,
                            "choose": self.sweep.choose,
                            "values": [float(x) for x in self.sweep.values],
                        },
                    }
                )
            )
        return out

    def default_spec(self) -> StudySpec:
        """The study whose retraining is each architecture's default configuration (``retrain.default``): named
        ``NAME.default``, shared by all replicates (the default does not depend on tuning)."""
        return self.model_copy(
            update={
                "name": f"{self.name}.default",
                "replicates": 1,
                "replicate_point": {"of": self.name, "default": True},
            }
        )

    @property
    def family(self) -> int:
        """How many architectures the comparison holds (a replicate may tune fewer of them)."""
        return int((self.replicate_point or {}).get("family") or len(self.architectures))

    @property
    def is_default(self) -> bool:
        return bool(self.replicate_point and self.replicate_point.get("default"))

    # -- resolution ----------------------------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    def space_path(self, arch: ArchitectureSpec) -> Path:
        """The architecture's search space: the one the study names; else ``../search_spaces/<name>.yaml`` beside
        the study's folder when that file exists; else the one hpo ships (:mod:`hpo.config.shipped`)."""
        if arch.search_space:
            return (self.base_dir / arch.search_space).resolve()
        local = (self.base_dir.parent / "search_spaces" / f"{arch.name}.yaml").resolve()
        if local.is_file():
            return local
        from hpo.config.shipped import shipped_space

        return shipped_space(arch.name) or local

    def spaces(self) -> dict[str, SearchSpace]:
        """Each architecture's search space, loaded and checked to belong to it."""
        if self.stored_spaces is not None:
            return dict(self.stored_spaces)
        out = {}
        for arch in self.architectures:
            space = load_space(self.space_path(arch))
            if space.architecture not in (None, arch.name):
                raise ConfigError(
                    f"{space.source}: architecture is {space.architecture!r}, but the study uses it "
                    f"for {arch.name!r}"
                )
            out[arch.name] = self._expanding(space)
        return out

    def optimizer_space_loaded(self) -> SearchSpace:
        if self.stored_optimizer_space is not None:
            return self.stored_optimizer_space
        return self._expanding(
            load_space((self.base_dir / self.optimizer_space).resolve())
            if self.optimizer_space
            else SearchSpace()
        )

    def _expanding(self, space: SearchSpace) -> SearchSpace:
        """``space`` with ``trials.expand``'s parameters marked ``expand`` (limits a space gives are kept)."""
        names = self.budget_rule.expand if self.budget_rule is not None else []
        marked = {
            n: r.model_copy(update={"expand": True})
            for n, r in space.params.items()
            if (names == "all" or n in names) and r.type != "categorical" and r.expand is False
        }
        return space.model_copy(update={"params": {**space.params, **marked}}) if marked else space

    def study_name(self, arch: str) -> str:
        from hpo.config.naming import tuning_study_name

        return tuning_study_name(self.name, arch)

    def resolved(self) -> dict[str, Any]:
        """The spec with every search space inlined: stored on the study, enough to reproduce it."""
        data = self.model_dump(exclude={"source", "stored_spaces", "stored_optimizer_space"})
        data["search_spaces"] = {k: v.model_dump(exclude={"source"}) for k, v in self.spaces().items()}
        data["optimizer_space_resolved"] = self.optimizer_space_loaded().model_dump(exclude={"source"})
        data["source_file"] = str(Path(self.source).resolve()) if self.source else ""
        data["plugin_origins"] = self.plugin_origins()
        return json.loads(json.dumps(data, default=str))

    @property
    def budget_rule(self) -> TrialBudget | None:
        """The convergence budget, when ``trials`` is one."""
        return self.trials if isinstance(self.trials, TrialBudget) else None

    @property
    def first_trials(self) -> int | None:
        """The tickets queued at first: ``trials``, or a convergence budget's ``min``."""
        return self.trials.min if isinstance(self.trials, TrialBudget) else self.trials

    def definition(self, arch: str) -> dict[str, Any]:
        """What defines architecture ``arch``'s tuning experiment, as compared when a study is resumed: the
        dataset, its search space and the optimiser space, the objective, the training settings (less where they
        run: device, threads, evaluation batch), the budget and the seed. Counts, sampler and retraining may
        change between runs."""
        r = self.resolved()
        training = {
            k: v for k, v in r["training"].items() if k not in ("device", "threads", "eval_batch_size")
        }
        return {
            "dataset": r["dataset"],
            "search_space": r["search_spaces"].get(arch),
            "optimizer_space": r["optimizer_space_resolved"],
            "objective": r["objective"],
            "training": training,
            "budget": r["budget"],
            "seed": r["seed"],
        }

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> StudySpec:
        """The spec as stored on its studies by :meth:`resolved` (what workers run), search spaces included."""
        data = dict(stored)
        spaces = data.pop("search_spaces", None)
        optimizer = data.pop("optimizer_space_resolved", None)
        source = data.pop("source_file", "")
        stored_origins = data.pop("plugin_origins", {}) or {}
        _same_plugins(stored_origins, Path(source).parent if source else Path.cwd())
        try:
            spec = cls.model_validate(
                {**data, "source": source, "stored_spaces": spaces, "stored_optimizer_space": optimizer}
            )
        except ValidationError as exc:
            raise ConfigError(format_validation_error("the spec stored on the study", exc)) from None
        return spec


def _same_plugins(stored: dict[str, str], base_dir: Path) -> None:
    """A worker or a retrain must run the plugin code the study was tuned with, or refuse in one line."""
    if not stored:
        return
    from hpo.models.plugins import plugin_origin

    for plugin, origin in stored.items():
        now = plugin_origin(plugin, base_dir)
        if now != origin:
            raise ConfigError(
                f"plugin {plugin} is not the code the study was created with: stored {origin}, found {now}; "
                "restore it or start a new study"
            )


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem is reported at once in one :class:`ConfigError`."""
    path = Path(path)
    raw = read_yaml(path)
    plugins = raw.get("plugins") if isinstance(raw, dict) else None
    if isinstance(plugins, list) and all(isinstance(p, str) and p for p in plugins):
        from hpo.models.plugins import load_plugins

        try:  # first, so that a plugin's failure is its own line, not a validation error of the whole file
            load_plugins(plugins, path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: plugins: {exc}") from None
    try:
        spec = StudySpec.model_validate({**raw, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
    return spec


def changed_fields(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted paths where two resolved definitions differ (``dataset.p``, ``training.epochs``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for k in sorted(set(before) | set(after), key=str):
            out += changed_fields(before.get(k), after.get(k), f"{prefix}{k}.")
        return out
    return [] if before == after else [prefix.rstrip(".")]
