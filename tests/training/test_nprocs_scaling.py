"""Smoke test of benchmarks/nprocs_scaling.py: one seed, three epochs, both configurations."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "nprocs_scaling.py"


@pytest.mark.slow
def test_quick_run_writes_the_report(shipped_data, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    report = tmp_path / "nprocs.md"
    run = subprocess.run([sys.executable, str(SCRIPT), "--datasets", "Cora", "--batch-sizes",
                          "512", "--seeds", "1", "--epochs", "3", "--results", str(report)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = report.read_text().splitlines()
    for key in ("machine", "versions", "command", "commit", "threads"):
        assert any(line.startswith(f"- {key}: ") for line in lines)
    # summary: 140 training nodes make one batch per process; then one row per run
    assert len([line for line in lines if line.startswith("| Cora | 512 | 1, 1 |")]) == 1
    assert len([line for line in lines if line.startswith("| Cora | 512 | 0 |")]) == 2
