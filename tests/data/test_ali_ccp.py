"""The shipped Ali-CCP declaration reads a small generated file in the published layout (header of numeric field
IDs, 23 sparse fields, 8 dense ones, click and purchase); the real files cannot be downloaded here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hpo.cli import main
from hpo.data.user import load_user_dataset
from hpo.models import create_model
from hpo.yamlio import read_yaml

ROOT = Path(__file__).resolve().parents[2]
DECLARATION = ROOT / "studies" / "datasets" / "ali_ccp.yaml"
SPARSE = [
    "101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210", "216", "508", "509",
    "702", "853", "301", "109_14", "110_14", "127_14", "150_14",
]  # fmt: skip
DENSE = ["D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"]


def published(n: int, seed: int) -> pd.DataFrame:
    """Rows as the preprocessed Ali-CCP files hold them: label-encoded IDs, dense values, entire-space labels."""
    rng = np.random.default_rng(seed)
    frame = {"click": (rng.random(n) < 0.2).astype(int)}
    frame["purchase"] = frame["click"] * (rng.random(n) < 0.3)
    for k, col in enumerate(SPARSE):
        frame[col] = rng.zipf(1.3, n) % (10 + 40 * k)
    for col in DENSE:
        frame[col] = rng.random(n).round(4)
    return pd.DataFrame(frame)


def test_shipped_ali_ccp_declaration_reads_the_published_layout(tmp_path: Path, capsys) -> None:
    assert [str(c) for c in read_yaml(DECLARATION)["sparse"]] == SPARSE  # 109_14 stays a name, not 10914
    shutil.copy(DECLARATION, tmp_path / "ali_ccp.yaml")
    for split, n, seed in (("train", 600, 0), ("val", 200, 1), ("test", 200, 2)):
        published(n, seed).to_csv(tmp_path / f"ali_ccp_{split}.csv", index=False)
    ds = load_user_dataset(tmp_path / "ali_ccp.yaml", use_cache=False)
    assert [f.name for f in ds.spec.sparse] == SPARSE and ds.continuous == tuple(DENSE)
    assert ds.spec.cardinalities == () and [t.name for t in ds.tasks] == ["click", "purchase"]
    assert [len(ds.splits[s]) for s in ("train", "valid", "test")] == [600, 200, 200]
    assert main(["data", "info", str(tmp_path / "ali_ccp.yaml")]) == 0
    out = capsys.readouterr().out
    assert "8 continuous, 0 categorical, 23 sparse (embedded)" in out and "sparse field 109_14:" in out
    model = create_model("esmm", ds.spec, ds.tasks, field_dim=4, embed_dim=8, tower_units=(8,))
    out_t = model(ds.splits["test"].features())
    assert out_t.shape == (1, 200, 2) and torch.isfinite(out_t).all()
