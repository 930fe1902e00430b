#!/usr/bin/env bash
# Issue 32's full-space census runs (studies/census_group1_leakage_free_full.yaml, then census_group2_full.yaml):
# tune until settled, retrain on the crossed seeds, write the report, export the tables. Every step resumes, so
# rerun this script after an interruption. It runs from a snapshot of the code (a git worktree at the commit it
# was started from) so that editing the checkout never changes a running study, and keeps each database in RUNS.
#   scripts/census_full.sh [RUNS]          RUNS defaults to /work/runs
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS="${1:-/work/runs}"
mkdir -p "$RUNS"
REV="$(git -C "$ROOT" rev-parse --short HEAD)"
TREE="$RUNS/tree-$REV"
[ -d "$TREE" ] || git -C "$ROOT" worktree add --detach "$TREE" "$REV" >/dev/null
export PYTHONPATH="$TREE" HPO_DATA_DIR="${HPO_DATA_DIR:-$ROOT/../shared/data}"
PY="$ROOT/.venv/bin/python"
cd "$TREE"
for study in census_group1_leakage_free_full census_group2_full; do
  db="sqlite:///$RUNS/$study.db"
  for step in run retrain; do
    start=$(date +%s)
    "$PY" -m hpo.cli --log-level info "$step" "studies/$study.yaml" --storage "$db" --quiet
    echo "$study $step $REV $(( $(date +%s) - start )) s" >> "$RUNS/walltimes.txt"
  done
  "$PY" -m hpo.cli report "studies/$study.yaml" --storage "$db" --out "$RUNS/reports/$study.html"
  "$PY" -m hpo.cli export "studies/$study.yaml" --storage "$db" --out "$RUNS/exports/$study"
done
