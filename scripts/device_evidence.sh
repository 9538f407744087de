#!/usr/bin/env bash
# One prepared command for a lent GPU machine (no network): install from the wheelhouse made
# here (`make wheelhouse WHEEL_PYTHON=3.12 ...`), run `make gpu-check` (with the HAMi-core
# library built by `make hami-core`, carried in build/hami-core), then the suite-overhead
# benchmark, and leave everything in $OUT as one tar file. Usage on the device:
#   bash scripts/device_evidence.sh [gpu-check ARGS] ; OVERHEAD=0 skips the benchmark
# With LUPINE built here (`make remoting-layer SRC=...`, carried in build/lupine), LUPINE=1
# first runs gpu-check's optional LUPINE items (~250 s planned): with the 8-minute plan and
# the benchmark that is more than 15 minutes of device time, so choose (e.g. OVERHEAD=0, or
# ARGS skip=[...] for items already proven).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
work=/tmp/evidence; rm -rf "$work"; mkdir -p "$work"
began=$(date +%s)
stamp() { echo "== $1 at $(( $(date +%s) - began )) s" | tee -a "$work/timeline.txt"; }
stamp setup
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv; } > "$work/gpu.txt" 2>&1
make setup VENV=/tmp/v WHEELHOUSE=wheelhouse > "$work/setup.log" 2>&1 || { stamp "setup failed"; tail -20 "$work/setup.log"; }
if [ "${LUPINE:-0}" = 1 ]; then
  stamp gpu-check-lupine
  make gpu-check VENV=/tmp/v ARGS="out=$work/gpu-check-lupine results_dir=$work/results-lupine only=[lupine_bert,lupine_parity,lupine_microbench,lupine_profile]" \
    2>&1 | tee "$work/gpu-check-lupine.log" | tail -20
fi
stamp gpu-check
make gpu-check VENV=/tmp/v ARGS="out=$work/gpu-check results_dir=$work/results $*" 2>&1 | tee "$work/gpu-check.log" | tail -40
if [ "${OVERHEAD:-1}" = 1 ]; then
  stamp bench-overhead
  make bench-overhead VENV=/tmp/v backend=native \
    ARGS="results_dir=$work/overhead rounds=${ROUNDS:-2} ablation_rounds=${ABLATIONS:-1} tracking=none" \
    > "$work/bench-overhead.log" 2>&1; tail -25 "$work/bench-overhead.log"
fi
stamp done
tar czf "$OUT/evidence.tgz" --exclude='.cache' --exclude='exports' --exclude='*.npy' --exclude='*.pt' --exclude='*.safetensors' -C /tmp evidence
ls -la "$OUT"
