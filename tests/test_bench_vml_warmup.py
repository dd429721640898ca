"""The benchmark workers resolve MKL's VML dispatch before measuring.

oneMKL 2024.2 (in the torch wheels) can run a VML function's first call on one
intra-op thread with its low-accuracy AVX2 "EP" kernel when that call runs on
several threads at once (pytorch/pytorch#188792).  That made bench_layers.py's
output check against PyG flaky (PyG's softmax ``exp`` was the first one in the
worker).  Each child below is a fresh forked worker, as under the fork server,
that does what the check did: a matmul, then a multi-threaded float32 ``exp``,
through ``common.measure_safely`` (benchmarks/common.py).  Without the warm-up about 4 % of such
workers got a corrupted chunk on this kind of machine (AVX-512, 2 threads).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
WORKERS = 250

_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import torch
import common  # no tensor op in this parent: every child is a fresh worker

def first_exp(spec):
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2708, 1433, generator=g)
    w = torch.randn(64, 1433, generator=g)
    (x @ w.t()).sum()
    s = torch.rand(13264, 8, generator=g) * -4.0
    got = torch.exp(s).numpy().astype(np.float64)
    want = np.exp(s.numpy().astype(np.float64))
    return {"rel_err": float(np.max(np.abs(got / want - 1.0)))}

errors = []
for _ in range(int(sys.argv[2])):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.write(write_fd, json.dumps(common.measure_safely({}, first_exp)).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        result = json.loads(f.read())
    os.waitpid(pid, 0)
    errors.append(result.get("rel_err", result.get("error")))
print(json.dumps(errors))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_first_exp_in_a_fresh_worker_is_accurate():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(BENCH), str(WORKERS)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(errors) == WORKERS
    assert all(isinstance(e, float) for e in errors), errors
    bad = [e for e in errors if e > 1e-6]
    assert not bad, f"{len(bad)} of {WORKERS} workers got a low-accuracy exp: {bad[:5]}"


def test_resolve_vml_dispatch_covers_torch_ops():
    sys.path.insert(0, str(BENCH))
    try:
        import common
    finally:
        sys.path.remove(str(BENCH))
    import torch

    assert all(callable(getattr(torch, name)) for name in common.VML_OPS)
    common.resolve_vml_dispatch()
