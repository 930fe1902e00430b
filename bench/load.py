"""Peak memory of loading a large user table: a 10-million-row CSV declared in a dataset YAML.

The table is census-shaped but wider in rows: 4 continuous columns (one with "?" for missing values), 6 text
categorical columns and 2 label columns (one text, one numeric), written once (gzip off, a header row). Each
candidate loads it in a fresh process, and the peak resident memory above the process's baseline (after imports)
is compared with the size of one copy of the prepared data, the tensors ``load_user_dataset`` returns:

* ``ours``: ``load_user_dataset`` (categoricals read as pandas categoricals, one encoding pass into arrays already
  in split order, splits as views);
* ``pandas``: only ``pandas.read_csv`` of the same file with default options (text as Python strings), the first
  step of the obvious implementation; a reference for what reading alone costs.

The claim is ``ours`` <= 2 copies: the prepared arrays plus at most one more copy's worth at the peak. Measured
on the 2-core CPU machine (2026-11-23), 10 million rows (679 MB of CSV, 725 MB prepared): ours peaked at 1.94
copies, ``pandas.read_csv`` alone at 3.12 (ours / pandas 0.62).

    python bench/load.py [--rows 10000000] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

CATEGORIES = [[f"c{j}_{k}" for k in range(n)] for j, n in enumerate((9, 17, 52, 6, 24, 40))]
DECLARATION = {
    "name": "big",
    "file": "big.csv",
    "na_values": ["?"],
    "continuous": ["x0", "x1", "x2", "x3"],
    "categorical": [f"k{j}" for j in range(6)],
    "tasks": [
        {"name": "a", "column": "label_a", "kind": "binary", "equals": "yes"},
        {"name": "b", "column": "label_b", "kind": "binary", "above": 0.5},
    ],
    "split": {"valid": 0.1, "test": 0.1, "seed": 0},
}


def write_table(directory: Path, n: int, chunk: int = 1_000_000) -> Path:
    path = directory / "big.csv"
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            frame = pd.DataFrame({f"x{j}": rng.normal(size=m).round(4) for j in range(4)})
            frame["x3"] = frame["x3"].astype(object).where(rng.random(m) > 0.01, "?")
            for j, cats in enumerate(CATEGORIES):
                frame[f"k{j}"] = np.asarray(cats)[rng.integers(0, len(cats), m)]
            frame["label_a"] = np.where(rng.random(m) < 0.3, "yes", "no")
            frame["label_b"] = rng.random(m).round(3)
            frame.to_csv(f, header=start == 0, index=False)
    (directory / "big.yaml").write_text(yaml.safe_dump(DECLARATION))
    return path


CHILD = r"""
import resource, sys, json
import numpy as np, pandas as pd, torch
from hpo.data.user import load_user_dataset
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
import time
base = rss()
what, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
if what == "ours":
    ds = load_user_dataset(path, use_cache=False)
    copy = sum(t.numel() * t.element_size() for s in ds.splits.values() for t in (s.cont, s.cat, s.y))
else:
    frame = pd.read_csv(path)
    copy = int(frame.memory_usage(deep=True).sum())
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "peak": peak, "copy": copy, "seconds": seconds}))
"""


def measure(what: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(path)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        csv_path = write_table(directory, args.rows)
        file_mb = csv_path.stat().st_size / 2**20
        ours = measure("ours", directory / "big.yaml")
        pandas = measure("pandas", csv_path)
    copy = ours["copy"]
    result = {
        "rows": args.rows,
        "file_mb": round(file_mb, 1),
        "prepared_mb": round(copy / 2**20, 1),
        "ours_peak_mb": round((ours["peak"] - ours["base"]) / 2**20, 1),
        "ours_peak_copies": round((ours["peak"] - ours["base"]) / copy, 2),
        "pandas_frame_mb": round(pandas["copy"] / 2**20, 1),
        "pandas_peak_mb": round((pandas["peak"] - pandas["base"]) / 2**20, 1),
        "pandas_peak_copies": round((pandas["peak"] - pandas["base"]) / copy, 2),
        "ours_vs_pandas_read": round((ours["peak"] - ours["base"]) / (pandas["peak"] - pandas["base"]), 2),
        "ours_seconds_vs_pandas_read": round(ours["seconds"] / pandas["seconds"], 2),
    }
    for k, v in result.items():
        print(f"{k:>22}: {v}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
