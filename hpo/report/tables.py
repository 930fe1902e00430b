"""A study's results as a folder of plain tables (``hpo export``), and the report data read back from them.

Why: a database is a working store, not an archive. A GPU machine that is handed back takes its SQLite file with
it, and a study moved between machines should not need its database to be reported again. The export holds every
row a report reads (tuning trials, per-seed results and metrics, the searched ranges) plus one JSON file of the
studies' attributes (chosen configurations, provenance, gate use), so ``hpo report --from-tables FOLDER`` renders the
same report, with today's report code, from the exported folder alone.

Layout, per sub-study ``NAME`` (one per sweep value or tuning replicate, or the study itself): ``NAME_trials``,
``NAME_seed_results``, ``NAME_seed_metrics``, ``NAME_seed_curves`` and ``NAME_searched`` (CSV or Parquet) and
``NAME_attrs.json``; the default configurations' seeds (``retrain.default``) under the default study's name the
same way. ``NAME_seed_curves`` (every run's loss per epoch) may be missing: exports written before hpo kept loss
curves have none, and read back without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.config.study import StudySpec
from hpo.errors import ConfigError
from hpo.report.data import ReportData

__all__ = ["FORMAT", "TABLES", "attrs_of", "read_default_tables", "read_tables", "write_tables"]

FORMAT = "hpo-export/1"
TABLES = ("trials", "seed_results", "seed_metrics", "searched", "seed_curves")
OPTIONAL = ("seed_curves",)  # tables an export may lack (written before they existed): read back empty
_DATES = ("datetime_start", "datetime_complete", "created_at")


def _write_frame(df: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(path, index=False)


def attrs_of(data: ReportData) -> dict[str, Any]:
    """Everything of ``data`` that is not a table, as JSON-ready values."""
    return {
        "format": FORMAT,
        "storage": data.storage,
        "study_attrs": data.study_attrs,
        "retrain_attrs": data.retrain_attrs,
        "importances": data.importances,
        "gate_use": {a: g.to_dict(orient="records") for a, g in data.gate_use.items()},
        "directions": data.directions,
        "metric_names": data.metric_names,
        "versions": data.versions,
        "model_origins": data.model_origins,
        "code_revisions": data.code_revisions,
        "kernels": data.kernels,
    }


def write_tables(parts: list[tuple[str, str, Any]], folder: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``(name, table, value)`` parts into ``folder``: a DataFrame as ``NAME_TABLE.FMT``, the ``attrs``
    dictionary as ``NAME_attrs.json``; return the files written."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format must be csv or parquet, got {fmt!r}")
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table, value in parts:
        if table == "attrs":
            path = target / f"{name}_attrs.json"
            path.write_text(json.dumps(value, indent=1, default=str), encoding="utf-8")
        else:
            path = target / f"{name}_{table}.{fmt}"
            _write_frame(value, path, fmt)
        written.append(path)
    return written


def _read_frame(folder: Path, name: str, table: str) -> pd.DataFrame:
    """``NAME_TABLE.parquet`` or ``.csv`` from ``folder`` (floats exactly as written); missing means an error,
    unless the table is ``OPTIONAL``."""
    for suffix in ("parquet", "csv"):
        path = folder / f"{name}_{table}.{suffix}"
        if not path.exists():
            continue
        if suffix == "parquet":
            df = pd.read_parquet(path)
        else:
            try:
                df = pd.read_csv(path)
            except pd.errors.EmptyDataError:
                return pd.DataFrame()
        for col in _DATES:
            if col in df:
                df[col] = pd.to_datetime(df[col], errors="coerce", format="mixed")
        return df
    if table in OPTIONAL:
        return pd.DataFrame()
    required = [t for t in TABLES if t not in OPTIONAL]
    raise ConfigError(
        f"{folder / f'{name}_{table}.csv'}: not found; an exported study has {', '.join(required)} (csv or parquet) "
        f"and attrs.json per sub-study: write them with `hpo export STUDY --out {folder}`"
    )


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    path = folder / f"{name}_attrs.json"
    try:
        attrs = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; write the study's tables with `hpo export STUDY --out {folder}`"
        ) from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if attrs.get("format") != FORMAT:
        raise ConfigError(f"{path}: field 'format' must be {FORMAT!r}, got {attrs.get('format')!r}")
    return dict(attrs)


def read_tables(spec: StudySpec, folder: str | Path) -> ReportData:
    """One (sub-)study's report data from its exported tables: what ``collect`` reads from a storage."""
    folder = Path(folder)
    attrs = _read_json(folder, spec.name)
    frames = {t: _read_frame(folder, spec.name, t) for t in TABLES}
    data = ReportData(
        spec,
        f"{attrs.get('storage') or 'unknown storage'}, read back from the tables exported to {folder}",
        frames["trials"],
        frames["seed_results"],
        frames["seed_metrics"],
        dict(attrs.get("study_attrs") or {}),
        dict(attrs.get("retrain_attrs") or {}),
        gate_use={a: pd.DataFrame(rows) for a, rows in (attrs.get("gate_use") or {}).items()},
        importances=dict(attrs.get("importances") or {}),
        directions=list(attrs.get("directions") or []),
        metric_names=list(attrs.get("metric_names") or []),
        versions=dict(attrs.get("versions") or {}),
        model_origins=dict(attrs.get("model_origins") or {}),
        code_revisions=list(attrs.get("code_revisions") or []),
    )
    data.searched = frames["searched"]
    data.seed_curves = frames["seed_curves"]
    return data


def read_default_tables(
    base: StudySpec, folder: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """The default configurations' seed results, metrics and attributes from an exported folder."""
    folder, name = Path(folder), base.default_spec().name
    attrs = _read_json(folder, name)
    return (
        _read_frame(folder, name, "seed_results"),
        _read_frame(folder, name, "seed_metrics"),
        dict(attrs.get("default_attrs") or {}),
    )
