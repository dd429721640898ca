"""Smoke test of benchmarks/bench_layers.py: a quick run on the Cora-sized graph."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_layers.py"
PROVIDERS = ("pyg_attn", "pyg", "pyg-sparse")
LAYERS = ("GATConv", "GATv2Conv", "TransformerConv")


def _table_rows(stdout: str) -> list[list[str]]:
    """Rows of the result table: size layer C mode provider ms peak_MB speedup mem_ratio."""
    return [cells for cells in (line.split() for line in stdout.splitlines())
            if len(cells) == 11 and cells[0] == "cora" and cells[4] in PROVIDERS]


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/bench_layers.py not present")
def test_bench_layers_quick_cora(tmp_path):
    pytest.importorskip("torch_geometric")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    csv_path = tmp_path / "layers.csv"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--sizes", "cora", "--channels", "8",
           "--csv", str(csv_path)]
    # Generous limit: the first call may have to compile the fused kernel.
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    rows = _table_rows(proc.stdout)
    assert rows, f"no result table in the output:\n{proc.stdout}"
    for provider in PROVIDERS:
        assert any(r[4] == provider for r in rows), f"no row for {provider!r}:\n{proc.stdout}"
    assert {r[1] for r in rows} == set(LAYERS)
    assert {r[3] for r in rows} == {"forward", "full"}
    for r in rows:
        assert r[2] == "8"
        assert float(r[5]) > 0.0  # ms
        assert float(r[7]) > 0.0  # speed-up vs pyg
    assert all(float(r[7]) == pytest.approx(1.0) for r in rows if r[4] == "pyg")
    assert "WARNING" not in proc.stdout, proc.stdout
    assert "output check vs pyg" in proc.stdout
    assert csv_path.read_text().count("\n") == len(rows) + 1
