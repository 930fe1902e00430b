"""Write a study's shards: copies of one study YAML, each with a subset of its architectures (and sweep values).

Shards keep the study's ``name``, so the sub-studies they create in one storage are exactly those of the whole
study; each shard owns its sub-studies outright (no sub-study has two workers), which is why shards may run as
concurrent processes on one SQLite file where ``hpo run --workers N`` on SQLite is refused. Used to run the paper's
studies on one GPU machine within a lease (docs/results/README.md gives the exact commands).

    python scripts/split_study.py studies/paper_synthetic_correlation.yaml --by-architecture --sweep-parts 2
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import yaml


def shards(spec: dict, by_architecture: bool, sweep_parts: int) -> list[dict]:
    archs = spec["architectures"]
    arch_groups = [[a] for a in archs] if by_architecture else [archs]
    sweep = spec.get("sweep")
    if sweep:
        values = sweep["values"]
        sweep_groups = [values[i::sweep_parts] for i in range(sweep_parts)]
    else:
        sweep_groups = [None]
    out = []
    for arch_group, sweep_group in itertools.product(arch_groups, sweep_groups):
        shard = dict(spec, architectures=arch_group)
        if sweep_group is not None:
            if not sweep_group:
                continue
            shard["sweep"] = dict(sweep, values=sweep_group)
        out.append(shard)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--by-architecture", action="store_true")
    ap.add_argument("--sweep-parts", type=int, default=1)
    args = ap.parse_args()
    spec = yaml.safe_load(args.study.read_text())
    for i, shard in enumerate(shards(spec, args.by_architecture, args.sweep_parts)):
        # beside the study, so that its relative search-space paths still resolve
        path = args.study.with_name(f"_shard{i}_{args.study.name}")
        path.write_text(yaml.safe_dump(shard, sort_keys=False))
        print(path)


if __name__ == "__main__":
    main()
