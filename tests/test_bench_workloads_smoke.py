"""Smoke test of benchmarks/bench_workloads.py: small graphs, every workload and layer.

The script compares our model's outputs with PyG's before timing and exits with 1
when they differ, so a zero exit code means every correctness check passed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_workloads.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    """``bench_workloads.py --quick *args`` with the repository on the path; asserts exit 0."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc


def test_quick_run_passes_its_correctness_checks(tmp_path):
    out = tmp_path / "workloads"
    proc = run_script("--no-memory", "--out", str(out))
    checks = [line for line in proc.stdout.splitlines() if line.startswith("check ")]
    assert checks and all(": ok" in line for line in checks), proc.stdout[-4000:]
    table = out.with_suffix(".md").read_text()
    for workload in ("molecules", "cora", "cora-dropout", "50k-uncached", "arxiv-cached"):
        for layer in ("GATConv", "GATv2Conv", "TransformerConv"):
            assert f"| {workload} | {layer} |" in table
    assert "ours / floor" in table and "compiled / eager" in table
    assert "| cpu |" in table and "| commit |" in table
    assert out.with_suffix(".csv").exists()


def test_memory_worker_reports_a_peak():
    proc = run_script("--workloads", "molecules", "--layers", "GATConv")
    row = next(line for line in proc.stdout.splitlines() if line.startswith('{"workload"'))
    assert '"ours_peak_mb": null' not in row and '"pyg_peak_mb": null' not in row
