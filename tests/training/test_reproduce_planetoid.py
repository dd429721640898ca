"""Smoke test of benchmarks/reproduce_planetoid.py: two epochs, one seed, then --summarize."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "reproduce_planetoid.py"


@pytest.mark.slow
def test_quick_run_and_summary(shipped_data, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    rows_csv = tmp_path / "rows.csv"
    run = subprocess.run([sys.executable, str(SCRIPT), "--datasets", "Cora", "--models", "gat",
                          "--seeds", "1", "--first-seed", "2", "--epochs", "2",
                          "--csv", str(rows_csv)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    with open(rows_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["seed"], r["epochs"]) for r in rows] == [("gat", "2", "2"),
                                                                    ("pyg-gat", "2", "2")]
    lines = [line.split() for line in run.stdout.splitlines() if line.startswith("Cora ")]
    table = {cells[1]: cells for cells in lines if len(cells) == 9}
    assert set(table) == {"gat", "pyg-gat"} and table["pyg-gat"][-1] == "1.00x"

    summary = subprocess.run([sys.executable, str(SCRIPT), "--summarize", str(rows_csv)],
                             env=env, capture_output=True, text=True, timeout=600)
    assert summary.returncode == 0 and "pyg-gat" in summary.stdout
