"""Without a compiler the package falls back to the reference backend, warning once."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import warnings
import torch
from pyg_attn.ops import graph_attention, select_backend
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    q, k, v = (torch.randn(5, 2, 3) for _ in range(3))
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    out = graph_attention(q, k, v, edge_index)
    out = graph_attention(q, k, v, edge_index)
    ref = graph_attention(q, k, v, edge_index, backend="reference")
assert torch.equal(out, ref)
assert select_backend(None, torch.device("cpu")) == "reference"
messages = [str(w.message) for w in caught if "fused CPU kernel could not be built" in str(w.message)]
assert len(messages) == 1, messages
print("fallback ok")
"""


def test_missing_compiler_falls_back_with_one_warning(tmp_path):
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"),
               TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"), PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fallback ok" in result.stdout
