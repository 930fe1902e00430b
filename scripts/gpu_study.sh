#!/usr/bin/env bash
# One study on one GPU machine (device tool), as shards that own disjoint sub-studies (scripts/split_study.py),
# run concurrently on one SQLite file. Resumable: carry the database back in (carry_db/) and run again.
#   TUNE_S=140 RETRAIN_S=70 bash scripts/gpu_study.sh studies/X.yaml x.db --by-architecture
# Writes $OUT/<db stem>.tar.gz (database, report, CSVs, per-phase wall times, logs).
set -u
study=$1 db=$2; shift 2
W=${W:-/tmp/w}; mkdir -p "$W/logs"
[ -f "carry_db/$db" ] && cp -n "carry_db/$db" "$W/"
HPO="python3 -m hpo.cli"; st=$(basename "$study" .yaml)
shards=$(python3 scripts/split_study.py "$study" "$@")
t0=$(date +%s)
first=1  # the first process creates the schema alone (concurrent creation races in alembic: issue 12)
for s in $shards; do timeout "${TUNE_S:-270}" $HPO run "$s" --storage "sqlite:///$W/$db" --devices cuda --quiet \
    > "$W/logs/run_$(basename "$s").log" 2>&1 & [ $first = 1 ] && sleep 8; first=0; done; wait
echo "$st tuning: $(( $(date +%s) - t0 )) s" >> "$W/times.txt"; t0=$(date +%s)
for s in $shards; do timeout "${RETRAIN_S:-240}" $HPO retrain "$s" --storage "sqlite:///$W/$db" --devices cuda --quiet \
    > "$W/logs/retrain_$(basename "$s").log" 2>&1 & done; wait
echo "$st retraining: $(( $(date +%s) - t0 )) s" >> "$W/times.txt"; t0=$(date +%s)
$HPO report "$study" --storage "sqlite:///$W/$db" --out "$W/$st.html" > "$W/logs/report_$st.log" 2>&1
echo "$st report: $(( $(date +%s) - t0 )) s" >> "$W/times.txt"
nvidia-smi --query-gpu=name --format=csv,noheader > "$W/device.txt"
cat "$W/times.txt"; tail -n 2 "$W"/logs/*.log
tar -czf "$OUT/${db%.db}.tar.gz" -C "$W" .
