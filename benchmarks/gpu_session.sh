#!/usr/bin/env bash
# Every GPU check in one command, on a machine with a CUDA GPU, Triton and pytest-xdist:
# the GPU, driver and versions, the CUDA tests, the launch-configuration sweep
# (tune_gpu.py), bench_gpu.py and profile_gpu.py, each under its own time limit in
# seconds (0 skips the stage).  Logs and results are written to $OUT (default out/gpu);
# a summary of each stage is printed.  A Triton compile cache in .triton-cache.tgz (as
# written to $OUT/triton-cache.tgz by an earlier run) is unpacked first, so kernels are
# not compiled again.
# Usage: TEST_T=150 TUNE_T=200 BENCH_T=270 PROFILE_T=120 bash benchmarks/gpu_session.sh [bench args...]
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
TEST_T=${TEST_T:-150}
TUNE_T=${TUNE_T:-0}
BENCH_T=${BENCH_T:-270}
PROFILE_T=${PROFILE_T:-120}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -f .triton-cache.tgz ]; then mkdir -p ~/.triton && tar xzf .triton-cache.tgz -C ~/.triton; fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv \
  | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, torch_geometric as g; print(torch.__version__, triton.__version__, g.__version__)" \
  | tee -a "$OUT/gpu.txt"
git log -1 --format='commit %h' 2>/dev/null | tee -a "$OUT/gpu.txt"
git status --short 2>/dev/null | head -20 | tee -a "$OUT/gpu.txt"
stage() {  # stage NAME LIMIT LOG command...
  local name=$1 limit=$2 log=$3; shift 3
  [ "$limit" -gt 0 ] || return 0
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$log" 2>&1
  echo "$name rc=$? in $((SECONDS - t0)) s"
}
stage tune "$TUNE_T" tune.txt python3 benchmarks/tune_gpu.py --host
grep -v "^\s*$" "$OUT/tune.txt" 2>/dev/null | cut -c1-160 | head -150
stage tests "$TEST_T" tests.log python3 -m pytest -q -p no:cacheprovider -n 12 tests/triton \
  tests/nn/test_transformer_conv.py -k "not interpreter" -W ignore::DeprecationWarning
tail -25 "$OUT/tests.log" 2>/dev/null
stage bench "$BENCH_T" bench.log python3 benchmarks/bench_gpu.py --out "$OUT/gpu-bench.md" \
  --json "$OUT/gpu-bench.json" "$@"
grep -v '^{' "$OUT/bench.log" 2>/dev/null | tail -60
stage profile "$PROFILE_T" profile.txt python3 benchmarks/profile_gpu.py
grep -A12 "^===" "$OUT/profile.txt" 2>/dev/null | cut -c1-150 | head -80
tar czf "$OUT/triton-cache.tgz" -C ~/.triton cache 2>/dev/null
ls -la "$OUT"
