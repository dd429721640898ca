"""Smoke test of benchmarks/reproduce_planetoid.py: two epochs, one seed, then --summarize."""
from __future__ import annotations

import csv

import pytest

SCRIPT = "reproduce_planetoid.py"


@pytest.mark.slow
def test_quick_run_report_and_summary(run_benchmark, tmp_path):
    rows_csv, report = tmp_path / "rows.csv", tmp_path / "report.md"
    run = run_benchmark(SCRIPT, "--datasets", "Cora", "--models", "gat", "--seeds", "1",
                        "--first-seed", "2", "--epochs", "2", "--timing-epochs", "0",
                        "--csv", str(rows_csv), "--results", str(report))
    with open(rows_csv, newline="") as handle:
        lines = handle.read().splitlines()
    provenance = [line.split(":")[0] for line in lines if line.startswith("# ")]
    assert provenance == ["# machine", "# versions", "# command", "# commit", "# threads"]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert [(r["model"], r["scheme"], r["seed"], r["epochs"]) for r in rows] == [
        ("gat", "shared", "2", "2"), ("gat", "per_head", "2", "2"),
        ("pyg-gat", "shared", "2", "2"), ("pyg-gat", "per_head", "2", "2")]
    table = {(cells[1], cells[2]): cells for cells in
             (line.split() for line in run.stdout.splitlines() if line.startswith("Cora "))
             if len(cells) == 11}
    assert set(table) == {(m, s) for m in ("gat", "pyg-gat") for s in ("shared", "per_head")}
    assert table[("pyg-gat", "per_head")][-1] == "1.00x"
    text = report.read_text()
    assert "| Cora | per_head | gat |" in text and "| Cora | shared | gat |" in text
    assert "- commit: `" in text and "- command: `" in text

    merged, readme = tmp_path / "merged.md", tmp_path / "README.md"
    readme.write_text("intro\n<!-- planetoid-accuracy: generated -->\nold\n"
                      "<!-- /planetoid-accuracy -->\nend\n")
    summary = run_benchmark(SCRIPT, "--summarize", str(rows_csv), "--results", str(merged),
                            "--readme", str(readme))
    assert "pyg-gat" in summary.stdout
    assert merged.read_text() == text
    table_rows = [line for line in text.splitlines()
                  if line.startswith(("| Cora | shared |", "| Cora | per_head |"))]
    lines = readme.read_text().splitlines()
    assert lines[:3] == ["intro", "<!-- planetoid-accuracy: generated -->",
                         "| data set | scheme | model | test accuracy | PyG twin (`pyg-gat`) |"]
    assert lines[4:] == table_rows + ["<!-- /planetoid-accuracy -->", "end"]
