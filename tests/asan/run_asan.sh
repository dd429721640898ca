#!/usr/bin/env bash
# Builds the fused CPU kernel with AddressSanitizer and runs the op fuzz and
# bad-input tests under it (`make asan`).  Python itself is not instrumented, so
# the ASan runtime is preloaded; leak detection is off (the interpreter keeps
# memory until exit).  Any invalid read or write in the kernel aborts the run
# with its report on stderr (not captured by pytest).
#
# Usage: tests/asan/run_asan.sh [extra pytest arguments]
# Environment: PYTHON (default .venv/bin/python), CXX (default c++).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
LIBASAN=$("${CXX:-c++}" -print-file-name=libasan.so)
# Preloaded too: ASan intercepts C++ exceptions (TORCH_CHECK throws) only when
# libstdc++ is loaded at start-up, which a plain python binary does not do.
LIBSTDCXX=$("${CXX:-c++}" -print-file-name=libstdc++.so.6)
if [[ ! -e "$LIBASAN" ]]; then
  echo "run_asan.sh: libasan.so not found (install the compiler's AddressSanitizer runtime)" >&2
  exit 2
fi

# A separate extension build (its cache name follows from the flags).
export PYG_ATTN_EXTRA_CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g"
export PYG_ATTN_EXTRA_LDFLAGS="-fsanitize=address"
unset PYG_ATTN_DISABLE_CPP
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LD_PRELOAD="$LIBASAN:$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}"

# Fail early if the instrumented kernel cannot be built (the tests would
# otherwise fall back to the reference backend and prove nothing).
"$PYTHON" - <<'PY'
import sys
from pyg_attn.ops.cpu import load_extension
module = load_extension()
if module is None:
    sys.exit("run_asan.sh: the AddressSanitizer build of the fused kernel failed")
print(f"run_asan.sh: testing {module.__file__}")
PY

"$PYTHON" -m pytest -q -p no:cacheprovider --capture=sys \
  tests/test_malformed_graph.py tests/test_ops_softmax_and_errors.py tests/test_ops_attention.py "$@"
