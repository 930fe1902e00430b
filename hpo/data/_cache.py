"""An on-disk cache of prepared datasets, keyed by the source files' hashes and the preprocessing options.

Writes go to a temporary file in the cache directory and are renamed into place (atomic on POSIX), so concurrent
workers either see a complete cache file or none; two workers preparing at once both write whole files and the
last rename wins with identical content.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from hpo.data._tabular import Split, TabularDataset
from hpo.schema import InputSpec, SparseField, TaskSpec

__all__ = ["cache_dir", "cache_key", "file_sha256", "load_cached", "save_cached"]

# bump when the preparation code changes what it produces, so that old caches are not reused
PREPARATION_VERSION = 2  # 2: sparse fields; fractions and ID names in column inference


def cache_dir() -> Path:
    root = os.environ.get("HPO_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hpo"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(kind: str, file_hashes: dict[str, str], options: dict[str, Any]) -> str:
    blob = json.dumps(
        {"kind": kind, "files": file_hashes, "options": options, "version": PREPARATION_VERSION},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _path(key: str) -> Path:
    return cache_dir() / f"{key}.pt"


def save_cached(key: str, ds: TabularDataset) -> Path:
    """Write ``ds`` atomically; categorical codes are stored as int32 to halve the file."""
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": ds.name,
        "n_continuous": ds.spec.n_continuous,
        "cardinalities": list(ds.spec.cardinalities),
        "sparse": [[f.name, f.vocab, f.slots, f.pooling, f.dim] for f in ds.spec.sparse],
        "tasks": [[t.name, t.kind] for t in ds.tasks],
        "continuous": list(ds.continuous),
        "categorical": list(ds.categorical),
        "provenance": json.dumps(ds.provenance, default=str),
        "splits": {k: {"cont": s.cont, "cat": s.cat.to(torch.int32), "y": s.y} for k, s in ds.splits.items()},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_cached(key: str) -> TabularDataset | None:
    """The cached dataset, or None when absent or unreadable (then it is prepared again)."""
    path = _path(key)
    if not path.exists():
        return None
    try:
        p = torch.load(path, weights_only=True)
        splits = {k: Split(v["cont"], v["cat"].to(torch.int64), v["y"]) for k, v in p["splits"].items()}
        return TabularDataset(
            p["name"],
            InputSpec(
                p["n_continuous"],
                tuple(p["cardinalities"]),
                tuple(SparseField(*f) for f in p.get("sparse", [])),
            ),
            tuple(TaskSpec(n, k) for n, k in p["tasks"]),
            splits,
            tuple(p["continuous"]),
            tuple(p["categorical"]),
            json.loads(p["provenance"]),
        )
    except Exception:  # a truncated or foreign file: ignore it and rebuild
        return None
