#!/bin/bash
# Run every ablation of studies/ablations/ (issue 14) into one storage, write each report into OUT_DIR, then the
# summary of all of them (OUT_DIR/ablations_summary.csv and .html):
#   [SEEDS=30] [ONLY="baseline bottom_4"] scripts/run_ablations.sh [STORAGE_URL] [OUT_DIR] [--devices cuda]
# SEEDS overrides the studies' 100 runs per p (hpo retrain --seeds); ONLY picks ablations by name. Each study is an
# ordinary sweep; rerunning resumes. Wall time per study is printed (record it with the results).
set -euo pipefail
STORAGE=${1:-sqlite:///ablations.db}
OUT=${2:-reports/ablations}
shift $(( $# > 2 ? 2 : $# )) || true
mkdir -p "$OUT"
names=${ONLY:-$(for f in studies/ablations/*.yaml; do basename "$f" .yaml; done)}
for name in $names; do
  f=studies/ablations/$name.yaml
  t0=$(date +%s)
  hpo run "$f" --storage "$STORAGE" --quiet "$@"
  hpo retrain "$f" --storage "$STORAGE" --quiet ${SEEDS:+--seeds "$SEEDS"} "$@"
  hpo report "$f" --storage "$STORAGE" --out "$OUT/ablation_$name.html"
  echo "ablation $name: $(( $(date +%s) - t0 )) s"
done
python scripts/summarise_ablations.py "$OUT" "$OUT/ablations_summary"
