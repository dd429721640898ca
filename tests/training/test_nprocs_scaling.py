"""Smoke test of benchmarks/nprocs_scaling.py: one seed, three epochs, both configurations."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_quick_run_writes_the_report(run_benchmark, tmp_path):
    report = tmp_path / "nprocs.md"
    run_benchmark("nprocs_scaling.py", "--datasets", "Cora", "--public-batch-sizes", "512",
                  "--full-batch-sizes", "640", "--seeds", "1", "--epochs", "3",
                  "--results", str(report))
    lines = report.read_text().splitlines()
    for key in ("machine", "versions", "command", "commit", "threads"):
        assert any(line.startswith(f"- {key}: ") for line in lines)
    # summary: 140 training nodes (public split) make one batch per process, 1,208
    # (full split) two batches of 640 alone and one of 604 per process; then a row per run
    assert len([line for line in lines if line.startswith("| Cora | public | 512 | 1, 1 |")]) == 1
    assert len([line for line in lines if line.startswith("| Cora | full | 640 | 2, 1 |")]) == 1
    assert len([line for line in lines if line.startswith("| Cora | public | 512 | 0 |")]) == 2
    assert len([line for line in lines if line.startswith("| Cora | full | 640 | 0 |")]) == 2
