#!/usr/bin/env bash
# One call on a lent GPU machine: versions, the CUDA tests, then bench_gpu.py.
# Everything it writes lands in $OUT (the device tool brings it back).
# Usage: bash benchmarks/gpu_session.sh [TEST_TIMEOUT_S] [BENCH_TIMEOUT_S] [bench args...]
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
TEST_T=${1:-150}
BENCH_T=${2:-270}
shift 2 2>/dev/null || true
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -f .triton-cache.tgz ]; then mkdir -p ~/.triton && tar xzf .triton-cache.tgz -C ~/.triton; fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv \
  | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, torch_geometric as g; print(torch.__version__, triton.__version__, g.__version__)" \
  | tee -a "$OUT/gpu.txt"
t0=$SECONDS
timeout "$TEST_T" python3 -m pytest -q -p no:cacheprovider -n 12 tests/triton \
  tests/nn/test_transformer_conv.py -k "not interpreter" -W ignore::DeprecationWarning \
  > "$OUT/tests.log" 2>&1
echo "tests rc=$? in $((SECONDS - t0)) s"; tail -25 "$OUT/tests.log"
t0=$SECONDS
timeout "$BENCH_T" python3 benchmarks/bench_gpu.py --out "$OUT/gpu-bench.md" \
  --json "$OUT/gpu-bench.json" "$@" > "$OUT/bench.log" 2>&1
echo "bench rc=$? in $((SECONDS - t0)) s"
grep -v '^{' "$OUT/bench.log" | tail -60
t0=$SECONDS
timeout 120 python3 benchmarks/profile_gpu.py > "$OUT/profile.txt" 2>&1
echo "profile rc=$? in $((SECONDS - t0)) s"; grep -A12 "^===" "$OUT/profile.txt" | cut -c1-150 | head -120
tar czf "$OUT/triton-cache.tgz" -C ~/.triton cache 2>/dev/null
ls -la "$OUT"
