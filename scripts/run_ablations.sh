#!/bin/bash
# Run every ablation of studies/ablations/ (issue 14) into one storage and write each report beside the results:
#   scripts/run_ablations.sh [STORAGE_URL] [OUT_DIR] [--devices cuda]
# Each study is an ordinary sweep; rerunning resumes. Wall time per study is printed (record it with the results).
set -euo pipefail
STORAGE=${1:-sqlite:///ablations.db}
OUT=${2:-reports/ablations}
shift $(( $# > 2 ? 2 : $# )) || true
mkdir -p "$OUT"
for f in studies/ablations/*.yaml; do
  name=$(basename "$f" .yaml)
  t0=$(date +%s)
  hpo run "$f" --storage "$STORAGE" --quiet "$@"
  hpo retrain "$f" --storage "$STORAGE" --quiet "$@"
  hpo report "$f" --storage "$STORAGE" --out "$OUT/ablation_$name.html"
  echo "ablation $name: $(( $(date +%s) - t0 )) s"
done
