"""Smoke test of benchmarks/bench_kernel_share.py: a few small molecule batches."""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_kernel_share  # noqa: E402


def test_table_has_a_row_per_layer_with_consistent_ratios(tmp_path):
    out = tmp_path / "share"
    assert bench_kernel_share.main(["--quick", "--steps", "2", "--warmup", "1",
                                    "--out", str(out)]) == 0
    table = out.with_suffix(".md").read_text()
    number = r"([\d.]+)"
    for layer in bench_kernel_share.LAYERS:
        row = re.search(rf"\| {layer} \| " + r" \| ".join([number] * 6) + r" \| 2 \|", table)
        assert row, (layer, table)
        ours, floor, kernels, ours_floor, kernels_floor, bound = map(float, row.groups())
        assert min(ours, floor, kernels) > 0
        assert abs(ours_floor - ours / floor) < 0.01 + 0.01 * ours_floor
        assert abs(kernels_floor - kernels / floor) < 0.01 + 0.01 * kernels_floor
        assert abs(bound - (1 + kernels_floor)) < 0.011
    assert "| commit |" in table and "| command |" in table
