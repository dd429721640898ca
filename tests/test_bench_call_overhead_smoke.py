"""Smoke test of benchmarks/bench_call_overhead.py: a few calls per layer and mode."""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_call_overhead  # noqa: E402


def test_table_has_a_timed_row_per_layer_and_mode(tmp_path):
    out = tmp_path / "overhead"
    assert bench_call_overhead.main(["--calls", "10", "--out", str(out)]) == 0
    table = out.with_suffix(".md").read_text()
    for layer in bench_call_overhead.LAYERS:
        for mode in ("eval", "train"):
            row = re.search(rf"\| {layer} \| {mode} \| (\d+) \| (\d+) \| ([\d.]+)x \|", table)
            assert row, (layer, mode, table)
            ours, pyg, speedup = int(row[1]), int(row[2]), float(row[3])
            assert ours > 0 and pyg > 0 and speedup > 0
    assert "| commit |" in table and "| command |" in table
