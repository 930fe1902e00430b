#!/usr/bin/env bash
# The checks that need a GPU, as one short script for the device tool (under 8 minutes; results under $OUT):
# the CUDA tests, the training benchmarks on cuda (ratios measured in one run), the thread plan a CUDA worker
# gets, and one small study end to end (tune, retrain, report) with its wall times.
#   run: bash scripts/gpu_check.sh      (timeout_s 480; the machine starts bare, so it installs first)
set -u
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"; cd "$(dirname "$0")/.."
exec > >(tee "$OUT/gpu_check.log") 2>&1
t0=$(date +%s); step() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
step install
python3 -m pip install -q -e . 2>&1 | tail -1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
step "cuda tests"
timeout 120 python3 -m pytest -q tests/test_cuda.py tests/training/test_threads.py 2>&1 | tail -3
step "thread plan of a CUDA worker"
python3 -c "from hpo.cores import plan_threads as p; print(p(device='cuda'), p(device='cuda', workers=4))"
step "bench/train.py on cuda"
timeout 200 python3 bench/train.py --device cuda --rounds 3 --no-peers --json | tail -12 | tee "$OUT/bench_train_cuda.txt"
step "bench/recsys.py on cuda (sparse fields' embedding tables; ours only, the peers are not installed there)"
timeout 90 python3 bench/recsys.py --device cuda --rounds 1 --rows 100000 --json | tail -6 | tee "$OUT/bench_recsys_cuda.txt"
step "bench/amp.py on cuda (bf16 autocast against float32, per size)"
timeout 60 python3 bench/amp.py --device cuda --rounds 2 --steps 40 --json | tail -7 | tee "$OUT/bench_amp_cuda.txt"
step "a small study on cuda"
db="$OUT/smoke.db"; rm -f "$db"
for phase in run retrain; do
  s=$(date +%s)
  timeout 120 python3 -m hpo.cli "$phase" studies/smoke.yaml --storage "sqlite:///$db" --devices cuda --quiet | tail -2
  echo "smoke $phase: $(( $(date +%s) - s )) s" | tee -a "$OUT/times.txt"
done
python3 -m hpo.cli report studies/smoke.yaml --storage "sqlite:///$db" --out "$OUT/smoke.html" | tail -1
python3 -m hpo.cli status --storage "sqlite:///$db" --json > "$OUT/status.json"
step done
