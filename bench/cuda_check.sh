#!/usr/bin/env bash
# The CUDA path in one short run, for a machine with a GPU (the device tool: `run` with this script).
# 1. the CUDA tests (sampler equals the CPU and DDPMPipeline, JVP through fused attention equals FD, bfloat16,
#    a guided text transformer); 2. speed and memory of analyze vs the plain pipeline on the real configs, at 16 and
#    128 samples with analyze's defaults (b/a, probing's share of analyze, probe and sampling forwards counted).
# Results under $OUT (or ./cuda-results): pytest's log and bench_analyze's JSON.
set -euo pipefail
OUT="${OUT:-cuda-results}"
mkdir -p "$OUT"
export OMP_WAIT_POLICY=PASSIVE
PY="${PY:-python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
"$PY" -m pytest tests/test_cuda.py -m cuda -rA 2>&1 | tee "$OUT/test_cuda.log" | tail -20
"$PY" bench/bench_analyze.py --cuda --samples 16 128 --repeats 2 --no-naive --out "$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench_cuda.log" | tail -20
