"""The package's seams, checked: what each layer may import, no import-time side effects, one-line config errors.

Each import runs in a fresh interpreter, so what one test imported cannot hide what another pulls in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import main
from tests.search.conftest import make_study


def modules_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_loading_data_does_not_import_the_model_zoo() -> None:
    loaded = modules_after("import hpo.data, hpo.data.sources, hpo.data.registry")
    assert "hpo.models.moe" not in loaded and "hpo.models" not in loaded


@pytest.mark.parametrize(
    "module", ["hpo.report", "hpo.report.html", "hpo.report.sweep", "hpo.report.collect"]
)
def test_the_report_reads_storage_and_never_imports_search_or_training(module: str) -> None:
    loaded = modules_after(f"import {module}")
    assert not {m for m in loaded if m.startswith(("hpo.search", "hpo.training"))}


def test_storage_and_config_sit_below_search_and_training() -> None:
    loaded = modules_after(
        "import hpo.storage.engine, hpo.storage.results, hpo.storage.claims, hpo.config.study"
    )
    assert not {m for m in loaded if m.startswith(("hpo.search", "hpo.training", "hpo.report"))}


def test_importing_the_package_changes_nothing_global() -> None:
    # third-party libraries add warning filters of their own on import; hpo must add none, and leave Optuna's
    # verbosity and the logging handlers as they were
    code = (
        "import logging, warnings, optuna\n"
        "state = lambda: (optuna.logging.get_verbosity(), list(logging.getLogger().handlers),\n"
        "    list(logging.getLogger('optuna').handlers), list(logging.getLogger('hpo').handlers))\n"
        "before = state()\n"
        "import hpo.search, hpo.search.runner, hpo.search.retrain, hpo.report.html, hpo.cli\n"
        "assert state() == before, (before, state())\n"
        "mine = [f for f in warnings.filters if f[2] is optuna.exceptions.ExperimentalWarning]\n"
        "assert not mine, mine\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fixed_loss_weights_without_weights_fail_at_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = make_study(tmp_path, training={"epochs": 2, "loss_weighting": "fixed"})
    assert main(["validate", str(study)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training: Value error, loss_weighting 'fixed' needs loss_weights" in err[0], err
    study = make_study(
        tmp_path, training={"epochs": 2, "loss_weighting": "fixed", "loss_weights": [1.0, 0.5]}
    )
    assert main(["validate", str(study), "--samples", "5"]) == 0


def test_log_records_are_json_lines_off_a_terminal(tmp_path: Path) -> None:
    study = make_study(
        tmp_path, trials=1, architectures=["shared_bottom"], training={"epochs": 1, "device": "cpu"}
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo.cli",
            "--log-level",
            "info",
            "run",
            str(study),
            "--storage",
            f"sqlite:///{tmp_path / 'l.db'}",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "hpo.search.worker" and "joined" in r["message"] for r in records), done.stderr
    assert any("trial 0 complete" in r["message"] for r in records), done.stderr
    assert {"time", "level", "logger", "message", "pid"} <= set(records[0])


def test_no_function_in_the_package_is_longer_than_60_lines() -> None:
    import ast

    root = Path(__file__).resolve().parents[1] / "hpo"
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


# What each part of the package may import (besides itself and the base). Imports inside functions count; those
# under ``if TYPE_CHECKING:`` do not (they never run).
BASE = {
    "hpo",
    "hpo.errors",
    "hpo.limits",
    "hpo.schema",
    "hpo.yamlio",
    "hpo.logs",
    "hpo.estimators",
    "hpo.cores",
}
MAY_IMPORT = {
    "hpo.models": set(),
    "hpo.data": set(),
    "hpo.weighting": {"hpo.models"},  # loss-weighting strategies: read a model, named by the config
    "hpo.config": {"hpo.models", "hpo.data", "hpo.weighting"},
    "hpo.training": {"hpo.models", "hpo.data", "hpo.config", "hpo.weighting"},
    "hpo.storage": set(),  # needs none of the layers above the base: a new backend touches storage only
    "hpo.report": {"hpo.config", "hpo.storage"},  # reads the storage; never search or training
    "hpo.search": {"hpo.models", "hpo.data", "hpo.config", "hpo.weighting", "hpo.training", "hpo.storage"},
    "hpo.demo": {"hpo.config", "hpo.storage", "hpo.search", "hpo.report"},
}


def _module_graph() -> dict[str, set[str]]:
    """Module -> the hpo modules it imports, read from the source (``from hpo.x import y`` is ``hpo.x.y`` when
    that is a module, else ``hpo.x``)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    files = {}
    for path in sorted((root / "hpo").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str:
        while name not in files:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        skip = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names if a.name.split(".")[0] == "hpo"]
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").split(".")[0] == "hpo"
            ):
                base = node.module or ""
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else resolve(base) for a in node.names
                ]
            else:
                continue
            graph[module] |= {t for t in targets if t != module}
    return graph


def _part(module: str) -> str:
    return module if module in BASE else ".".join(module.split(".")[:2])


def test_no_import_circles() -> None:
    import graphlib

    graph = _module_graph()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_no_import_runs_back_up_the_layers() -> None:
    upward = [
        f"{m} -> {t}"
        for m, targets in sorted(_module_graph().items())
        for t in sorted(targets)
        if _part(m) in MAY_IMPORT
        and _part(t) != _part(m)
        and _part(t) not in BASE
        and _part(t) not in MAY_IMPORT[_part(m)]
    ]
    assert not upward, upward
    parts = {_part(m) for m in _module_graph()}
    assert parts <= BASE | set(MAY_IMPORT) | {"hpo.cli", "hpo.cli_docs"}, (
        "a new part of the package: place it"
    )


STORAGE_KIND = ("is_rdb", "is_sqlite", "sqlite_path", "journal_path", "get_backend_name")
# the one module allowed to reach into Optuna's private code (its docstring says why, piece by piece)
OPTUNA_ADAPTERS = {"hpo/storage/optuna_internals.py"}


def _package_sources() -> dict[str, str]:
    root = Path(__file__).resolve().parents[1]
    return {str(p.relative_to(root)): p.read_text() for p in sorted((root / "hpo").rglob("*.py"))}


def test_only_the_storage_layer_decides_by_the_kind_of_storage() -> None:
    """A new backend is a change to hpo/storage alone: nothing above it asks what kind of storage it has."""
    import re

    found = [
        f"{path}: {name}"
        for path, text in _package_sources().items()
        if not path.startswith("hpo/storage/")
        for name in STORAGE_KIND
        if re.search(rf"\b{name}\b", text)
    ]
    assert not found, found


def test_optuna_internals_are_touched_in_the_adapter_only() -> None:
    """Private Optuna names (``optuna.x._y``, ``._backend``, ``._trial_id``, ``._cached_frozen_trial``, private
    ``RDBStorage`` writers, ``HeartbeatThread``) appear only in the adapter module, whose test pins what it relies
    on, so an Optuna upgrade breaks in one place."""
    import re

    private = re.compile(
        r"optuna(\.\w+)*\._(?!_)\w+|\._backend\b|\._trial_id\b|\._cached_frozen_trial\b|\._storage\b"
        r"|_without_commit\b|\bHeartbeatThread\b|_create_scoped_session\b"
    )
    found = [
        f"{path}: {m.group(0)}"
        for path, text in _package_sources().items()
        if path not in OPTUNA_ADAPTERS
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        for m in [private.search(line)]
        if m is not None
    ]
    assert not found, found


# --- attribute names: declared once in hpo/storage/keys.py -------------------------------------------------------
# Where a string literal is an attribute's name: the argument of keys.key(), a key of keys.tag({...}), the key read
# from a plain-named view (.get/[]/in), and the keys of a dict or tuple whose items go through keys.key() or
# keys.tag(). Views are keys.plain(...), names bound to one, the report's study_attrs/retrain_attrs/... and loop
# variables over their values.
# plain-named views of stored attributes (``keys.plain(...)`` and the report's per-architecture copies)
_DIRECT_VIEWS = {"user_attrs", "system_attrs"}  # an Optuna study's or trial's attributes
# the report's copies, one view per architecture (or (replicate, architecture)): data.study_attrs[arch]
_PER_ARCH_VIEWS = {
    "study_attrs",
    "retrain_attrs",
    "replicate_attrs",
    "replicate_study_attrs",
    "default_attrs",
}


def _keys_call(n: ast.AST, name: str) -> bool:
    return (
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == name
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "keys"
    )


def _is_view(n: ast.AST, bound: set[str]) -> bool:
    """An expression that is a plain-named view of stored attributes."""
    if _keys_call(n, "plain"):
        return True
    if isinstance(n, ast.Name):
        return n.id in bound
    if isinstance(n, ast.Attribute):
        return n.attr in _DIRECT_VIEWS
    if isinstance(n, ast.Subscript):
        return isinstance(n.value, ast.Attribute) and n.value.attr in _PER_ARCH_VIEWS
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("dict", "next") and n.args:
        a = n.args[0]
        if n.func.id == "dict":
            return _is_view(a, bound)
        return _per_arch_call(a.args[0]) if isinstance(a, ast.Call) and a.args else False  # next(iter(...))
    return False


def _per_arch_call(n: ast.AST, method: str = "values") -> bool:
    """``data.study_attrs.values()`` (or ``.items()``): every architecture's view."""
    return (
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == method
        and isinstance(n.func.value, ast.Attribute)
        and n.func.value.attr in _PER_ARCH_VIEWS
    )


def _written_names(fn: ast.AST) -> set[str]:
    """Names whose dict/tuple literal holds attribute names: passed to keys.tag, or iterated into keys.key(k)."""
    out = set()
    for n in ast.walk(fn):
        if _keys_call(n, "tag") and n.args and isinstance(n.args[0], ast.Name):
            out.add(n.args[0].id)
        if isinstance(n, (ast.DictComp, ast.SetComp, ast.ListComp, ast.GeneratorExp)):
            uses_key = any(_keys_call(s, "key") for s in ast.walk(n))
            if uses_key:
                for g in n.generators:
                    it = g.iter
                    if (
                        isinstance(it, ast.Call)
                        and isinstance(it.func, ast.Attribute)
                        and it.func.attr == "items"
                    ):
                        it = it.func.value
                    if isinstance(it, ast.Name):
                        out.add(it.id)
                    # `if k not in skip`
                    for cond in g.ifs:
                        for s in ast.walk(cond):
                            if isinstance(s, ast.Compare):
                                out.update(c.id for c in s.comparators if isinstance(c, ast.Name))
        if isinstance(n, ast.For) and any(_keys_call(s, "key") for b in n.body for s in ast.walk(b)):
            it = n.iter
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "items":
                it = it.func.value
            if isinstance(it, ast.Name):
                out.add(it.id)
    return out


def _loop_views(fn: ast.AST) -> set[str]:
    """Loop variables over the per-architecture views (``for a in data.retrain_attrs.values()``)."""
    out = set()
    for n in ast.walk(fn):
        gens = (
            n.generators
            if isinstance(n, ast.DictComp | ast.SetComp | ast.ListComp | ast.GeneratorExp)
            else []
        )
        pairs = [(g.target, g.iter) for g in gens] + ([(n.target, n.iter)] if isinstance(n, ast.For) else [])
        out |= {t.id for t, it in pairs if isinstance(t, ast.Name) and _per_arch_call(it)}
        out |= {  # for arch, attrs in data.retrain_attrs.items()
            t.elts[1].id
            for t, it in pairs
            if isinstance(t, ast.Tuple) and len(t.elts) == 2 and isinstance(t.elts[1], ast.Name)
            and _per_arch_call(it, "items")
        }  # fmt: skip
    return out


def _attribute_literals(source: str) -> list[tuple[int, int, int, str]]:
    """(line, start, end, value) of every string literal used as a stored attribute's name."""
    tree = ast.parse(source)
    found = set()
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module))]
    for fn in scopes:
        nodes = list(ast.walk(fn))
        bound = {
            t.id
            for n in nodes
            if isinstance(n, (ast.Assign, ast.NamedExpr))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Name) and _is_view(n.value, set())
        } | _loop_views(fn)
        written = _written_names(fn)
        lits: list[ast.AST] = []
        for n in nodes:
            if _keys_call(n, "key") and n.args:
                lits.append(n.args[0])
            if _keys_call(n, "tag") and n.args and isinstance(n.args[0], ast.Dict):
                lits += n.args[0].keys
            if (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr in ("get", "pop", "setdefault")
                and n.args
                and _is_view(n.func.value, bound)
            ):
                lits.append(n.args[0])
            if isinstance(n, ast.Subscript) and _is_view(n.value, bound | written):
                lits.append(n.slice)
            if (
                isinstance(n, ast.Compare)
                and any(isinstance(o, (ast.In, ast.NotIn)) for o in n.ops)
                and any(_is_view(c, bound) for c in n.comparators)
            ):
                lits.append(n.left)
            if isinstance(n, (ast.Assign, ast.AnnAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                if any(isinstance(t, ast.Name) and t.id in written for t in targets) and n.value is not None:
                    v = n.value
                    if isinstance(v, ast.Dict):
                        lits += v.keys
                        for k, d in zip(
                            v.keys, v.values
                        ):  # {**({"x": 1} if c else {})}: an unpacked dict's keys
                            if k is None and isinstance(d, ast.IfExp):
                                lits += [
                                    k2 for b in (d.body, d.orelse) if isinstance(b, ast.Dict) for k2 in b.keys
                                ]
                    if isinstance(v, (ast.Tuple, ast.List)):
                        lits += v.elts
            if (
                isinstance(n, ast.AugAssign)
                and isinstance(n.target, ast.Name)
                and n.target.id in written
                and isinstance(n.value, ast.Dict)
            ):
                lits += n.value.keys
        for lit in lits:
            if isinstance(lit, ast.Constant) and isinstance(lit.value, str):
                found.add((lit.lineno, lit.col_offset, lit.end_col_offset, lit.value))
    return sorted(found)


def test_attribute_names_are_declared_once_in_keys() -> None:
    """No stored attribute's name is a string literal outside hpo/storage/keys.py: writers and readers use its
    constants, so a misspelt or renamed attribute fails at import instead of reading ``None``."""
    found = [
        f"{path}:{line} {value!r}"
        for path, text in _package_sources().items()
        if path != "hpo/storage/keys.py"
        for line, _, _, value in _attribute_literals(text)
    ]
    assert not found, found


def test_the_attribute_name_check_finds_each_form() -> None:
    planted = """
def f(t, study, data):
    study.set_user_attr(keys.key("a1"), 1)
    t.enqueue_trial({}, user_attrs=keys.tag({"a2": 1}))
    x = keys.plain(t.user_attrs).get("a3")
    attrs = keys.plain(study.user_attrs)
    y = attrs["a4"] if "a5" in attrs else None
    z = data.retrain_attrs["mmoe"].get("a6")
    w = [a.get("a7") for a in data.study_attrs.values()]
    built = {"a8": 1}
    set_trial_attrs(t, {keys.key(k): v for k, v in built.items()})
    for arch, attrs2 in data.retrain_attrs.items():
        print(attrs2["a9"])
    other = {"fine": 1}.get("fine")
"""
    assert [v for *_, v in _attribute_literals(planted)] == [f"a{i}" for i in range(1, 10)]
