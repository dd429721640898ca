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
def test_quick_run_report_and_summary(shipped_data, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    rows_csv, report = tmp_path / "rows.csv", tmp_path / "report.md"
    run = subprocess.run([sys.executable, str(SCRIPT), "--datasets", "Cora", "--models", "gat",
                          "--seeds", "1", "--first-seed", "2", "--epochs", "2",
                          "--timing-epochs", "0", "--csv", str(rows_csv),
                          "--results", str(report)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    with open(rows_csv, newline="") as handle:
        lines = handle.read().splitlines()
    provenance = [line.split(":")[0] for line in lines if line.startswith("# ")]
    assert provenance == ["# machine", "# versions", "# command", "# commit", "# threads"]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert [(r["model"], r["scheme"], r["seed"], r["epochs"]) for r in rows] == [
        ("gat", "shared", "2", "2"), ("gat", "paper", "2", "2"),
        ("pyg-gat", "shared", "2", "2"), ("pyg-gat", "paper", "2", "2")]
    table = {(cells[1], cells[2]): cells for cells in
             (line.split() for line in run.stdout.splitlines() if line.startswith("Cora "))
             if len(cells) == 11}
    assert set(table) == {(m, s) for m in ("gat", "pyg-gat") for s in ("shared", "paper")}
    assert table[("pyg-gat", "paper")][-1] == "1.00x"
    text = report.read_text()
    assert "| Cora | paper | gat |" in text and "| Cora | shared | gat |" in text
    assert "- commit: `" in text and "- command: `" in text

    merged, readme = tmp_path / "merged.md", tmp_path / "README.md"
    readme.write_text("intro\n<!-- planetoid-accuracy: generated -->\nold\n"
                      "<!-- /planetoid-accuracy -->\nend\n")
    summary = subprocess.run([sys.executable, str(SCRIPT), "--summarize", str(rows_csv),
                              "--results", str(merged), "--readme", str(readme)],
                             env=env, capture_output=True, text=True, timeout=600)
    assert summary.returncode == 0 and "pyg-gat" in summary.stdout
    assert merged.read_text() == text
    table_rows = [line for line in text.splitlines()
                  if line.startswith(("| Cora | shared |", "| Cora | paper |"))]
    lines = readme.read_text().splitlines()
    assert lines[:3] == ["intro", "<!-- planetoid-accuracy: generated -->",
                         "| data set | scheme | model | test accuracy | PyG twin (`pyg-gat`) |"]
    assert lines[4:] == table_rows + ["<!-- /planetoid-accuracy -->", "end"]
