#!/usr/bin/env bash
# The paper's synthetic studies at full size on one GPU machine (device tool), as shards run concurrently on one
# SQLite file per study (scripts/split_study.py). Resumable: carry the databases back in and run again.
# Writes $OUT/synthetic.tar.gz (databases, reports, CSVs, per-phase wall times, logs).
set -u
W=${W:-/tmp/w}; mkdir -p "$W/logs"
[ -d carry_db ] && cp -n carry_db/*.db "$W/" 2>/dev/null
HPO="python3 -m hpo.cli"
TUNE_S=${TUNE_S:-270}; RETRAIN_S=${RETRAIN_S:-240}
run_study() {  # run_study STUDY DB SPLITARGS...
  local study=$1 db=$2; shift 2
  local shards; shards=$(python3 scripts/split_study.py "$study" "$@")
  local t0=$(date +%s)
  for s in $shards; do timeout "$TUNE_S" $HPO run "$s" --storage "sqlite:///$W/$db" --devices cuda --quiet \
      > "$W/logs/run_$(basename "$s").log" 2>&1 & done; wait
  echo "$(basename "$study") tuning: $(( $(date +%s) - t0 )) s" >> "$W/times.txt"
  t0=$(date +%s)
  for s in $shards; do timeout "$RETRAIN_S" $HPO retrain "$s" --storage "sqlite:///$W/$db" --devices cuda --quiet \
      > "$W/logs/retrain_$(basename "$s").log" 2>&1 & done; wait
  echo "$(basename "$study") retraining: $(( $(date +%s) - t0 )) s" >> "$W/times.txt"
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$W/device.txt"
run_study studies/paper_synthetic_correlation.yaml synthetic.db --by-architecture --sweep-parts 2 &
run_study studies/paper_synthetic_shared_bottom.yaml synthetic_sb.db --sweep-parts 3 &
wait
for pair in paper_synthetic_correlation:synthetic.db paper_synthetic_shared_bottom:synthetic_sb.db; do
  st=${pair%%:*}; db=${pair##*:}; t0=$(date +%s)
  $HPO report "studies/$st.yaml" --storage "sqlite:///$W/$db" --out "$W/$st.html" > "$W/logs/report_$st.log" 2>&1
  echo "$st report: $(( $(date +%s) - t0 )) s" >> "$W/times.txt"
done
cat "$W/times.txt"; tail -n 3 "$W"/logs/*.log
tar -czf "$OUT/synthetic.tar.gz" -C "$W" .
