#!/usr/bin/env bash
# Issue 32's full-space census runs (studies/census_group1_leakage_free_full.yaml, then census_group2_full.yaml):
# tune until settled, retrain on the crossed seeds, write the report, export the tables. Every step resumes, so
# rerun this script after an interruption. It runs from a snapshot of the code (a git worktree at the commit it
# was started from) so that editing the checkout never changes a running study, and keeps each database in RUNS.
# A machine that keeps nothing between sessions resumes from the snapshot committed under docs/results/runs/
# (attempt1_median_pruner/ there is a finished first attempt, kept as a record, not resumed):
#   scripts/census_full.sh [RUNS]           run (or resume); RUNS defaults to /work/runs
#                                           (HPO_RUN_ARGS=--allow-changed continues after a change to a study file;
#                                           the change is recorded on the study)
#   CENSUS_STUDIES=census_group2_full scripts/census_full.sh   runs only that study (e.g. beside another instance);
#                                           any study under studies/ runs the same way, e.g. capacity/figure3
#                                           (issue 36; its files are named capacity_figure3)
#   scripts/census_full.sh snapshot [RUNS]  copy each database, consistently while it runs (SQLite's backup API),
#                                           gzipped into docs/results/runs/ to be committed, with its tables and
#                                           its progress report (`hpo report --partial`: NAME_progress.html); a
#                                           finished study (docs/results/NAME.html exists) is left as it is
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
read -ra STUDIES <<< "${CENSUS_STUDIES:-census_group1_leakage_free_full census_group2_full}"  # or one of them
SNAP="$ROOT/docs/results/runs"
if [ "${1:-}" = snapshot ]; then
  RUNS="${2:-/work/runs}"
  mkdir -p "$SNAP"
  for study in "${STUDIES[@]}"; do
    name="${study//\//_}"
    [ -f "$RUNS/$name.db" ] || continue
    # a finished study's final report is docs/results/NAME.html, written from its last snapshot: nothing to redo
    [ -f "$ROOT/docs/results/$name.html" ] && { echo "snapshot: $name is finished (docs/results/$name.html)"; continue; }
    "$ROOT/.venv/bin/python" -c "import sqlite3, sys; d = sqlite3.connect(sys.argv[2]); sqlite3.connect(sys.argv[1]).backup(d); d.close()" \
      "$RUNS/$name.db" "$RUNS/$name.snapshot.db"
    gzip -9 -c "$RUNS/$name.snapshot.db" > "$SNAP/$name.db.gz"
    "$ROOT/.venv/bin/python" "$ROOT/scripts/partial_trials.py" "sqlite:///$RUNS/$name.snapshot.db" "$SNAP/${name}_trials.csv"
    "$ROOT/.venv/bin/python" -m hpo.cli export "$ROOT/studies/$study.yaml" --storage "sqlite:///$RUNS/$name.snapshot.db" \
      --out "$SNAP/$name" --partial
    rm "$RUNS/$name.snapshot.db"
    # the progress report (no verdict before the retraining; #settled for every architecture and replicate)
    rm -f "$SNAP/${name}_progress"*
    "$ROOT/.venv/bin/python" -m hpo.cli report "$ROOT/studies/$study.yaml" --from-tables "$SNAP/$name" --partial \
      --out "$SNAP/${name}_progress.html"
    echo "snapshot: $SNAP/$name.db.gz"
  done
  exit 0
fi
RUNS="${1:-/work/runs}"
mkdir -p "$RUNS"
for study in "${STUDIES[@]}"; do  # a fresh machine: resume from the committed snapshot
  name="${study//\//_}"
  if [ ! -f "$RUNS/$name.db" ] && [ -f "$SNAP/$name.db.gz" ]; then
    gunzip -c "$SNAP/$name.db.gz" > "$RUNS/$name.db"
  fi
done
REV="$(git -C "$ROOT" rev-parse --short HEAD)"
TREE="$RUNS/tree-$REV"
[ -d "$TREE" ] || git -C "$ROOT" worktree add --detach "$TREE" "$REV" >/dev/null
export PYTHONPATH="$TREE" HPO_DATA_DIR="${HPO_DATA_DIR:-$ROOT/../shared/data}"
PY="$ROOT/.venv/bin/python"
cd "$TREE"
for study in "${STUDIES[@]}"; do
  name="${study//\//_}"
  db="sqlite:///$RUNS/$name.db"
  for step in run retrain; do
    start=$(date +%s)
    extra=()
    [ "$step" = run ] && [ -n "${HPO_RUN_ARGS:-}" ] && read -ra extra <<< "$HPO_RUN_ARGS"
    "$PY" -m hpo.cli --log-level info "$step" "studies/$study.yaml" --storage "$db" --quiet "${extra[@]}"
    echo "$name $step $REV $(( $(date +%s) - start )) s" >> "$RUNS/walltimes.txt"
  done
  "$PY" -m hpo.cli report "studies/$study.yaml" --storage "$db" --out "$RUNS/reports/$name.html"
  "$PY" -m hpo.cli export "studies/$study.yaml" --storage "$db" --out "$RUNS/exports/$name"
done
