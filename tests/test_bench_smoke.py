"""Smoke test of benchmarks/bench_ops.py: a quick run on the Cora-sized graph."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_ops.py"
PROVIDERS = ("pyg_attn", "reference", "pyg", "pyg-csr")


def _table_rows(stdout: str) -> list[list[str]]:
    """Rows of the result table: size score C mode provider ms peak_MB speedup mem_ratio."""
    rows = []
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) == 11 and cells[0] == "cora" and cells[4] in PROVIDERS:
            rows.append(cells)
    return rows


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/bench_ops.py not present")
def test_bench_ops_quick_cora(tmp_path):
    pytest.importorskip("torch_geometric")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(SCRIPT), "--quick", "--sizes", "cora", "--channels", "8",
           "--modes", "full", "--csv", str(tmp_path / "bench.csv")]
    # Generous limit: the first call may have to compile the fused kernel.
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    rows = _table_rows(proc.stdout)
    assert rows, f"no result table in the output:\n{proc.stdout}"
    for provider in PROVIDERS:
        mine = [r for r in rows if r[4] == provider]
        assert mine, f"no row for provider {provider!r}:\n{proc.stdout}"
        for r in mine:
            assert r[3] == "full"
            assert float(r[5]) > 0.0  # ms
            speedup = float(r[7])  # numeric speed-up vs pyg
            assert speedup > 0.0
    assert all(float(r[7]) == pytest.approx(1.0) for r in rows if r[4] == "pyg")
    assert "torch_scatter available" in proc.stdout
    assert (tmp_path / "bench.csv").read_text().count("\n") == len(rows) + 1


def test_swapped_imports_runs_one_script_with_either_import():
    pytest.importorskip("torch_geometric")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import swapped_imports
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    texts = {which: swapped_imports.SCRIPT.format(IMPORT=line).splitlines()
             for which, line in swapped_imports.IMPORTS.items()}
    changed = [a != b for a, b in zip(texts["pyg"], texts["pyg_attn"])]
    assert len(texts["pyg"]) == len(texts["pyg_attn"]) and sum(changed) == 1

    import torch_geometric.transforms as T

    from pyg_attn.datasets import load_dataset

    dataset = load_dataset("Cora", transform=T.NormalizeFeatures())
    for which in swapped_imports.IMPORTS:
        result = swapped_imports.run_script(which, dataset, seed=0, epochs=2)
        assert 0.0 <= result["test_acc"] <= 100.0 and result["epoch_ms"] > 0
