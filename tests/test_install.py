"""The wheel and the sdist install as users install them (a fresh venv, the pinned
torch first) and work outside the source tree: a layer with the fused kernel,
compiled on first use with a notice, and the command line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyg_attn

ROOT = Path(__file__).resolve().parents[1]

#: Run in the fresh venv: our GATConv against PyG's with the same parameters.
USE_A_LAYER = """
import torch, pyg_attn
from pyg_attn.nn import GATConv
from pyg_attn.ops.cpu import load_extension
from torch_geometric.nn import GATConv as PyGGATConv
torch.manual_seed(0)
x, edge_index = torch.randn(6, 16), torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
theirs, ours = PyGGATConv(16, 8, heads=2), GATConv(16, 8, heads=2)
ours.load_state_dict(theirs.state_dict())
torch.testing.assert_close(ours(x, edge_index), theirs(x, edge_index), atol=1e-5, rtol=1e-5)
print(pyg_attn.__file__, load_extension() is not None)
"""


def run(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
    """Runs ``args``; fails the test with its output unless it exits 0."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900,
                          **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_wheel_and_sdist_install_and_run_outside_the_tree(tmp_path):
    built = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp_path / "dist",
                ROOT, cwd=tmp_path)
    assert "deprecat" not in (built.stdout + built.stderr).lower()
    [wheel] = (tmp_path / "dist").glob("pyg_attn-*.whl")
    [sdist] = (tmp_path / "dist").glob("pyg_attn-*.tar.gz")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "install", "--quiet", "--constraint", ROOT / "constraints.txt")
    run(*pip, "torch==2.13.0")  # pinned first: a plain torch requirement pulls CUDA
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYG_ATTN_DISABLE_CPP", "PYG_ATTN_EXTRA_CFLAGS",
                        "PYG_ATTN_EXTRA_LDFLAGS", "PYG_ATTN_NATIVE")}
    env["TORCH_EXTENSIONS_DIR"] = str(tmp_path / "extensions")

    # The sdist (built by pip like a user's, in isolation) replaces the wheel at the
    # same place: same sources there, so the kernel compiled for the wheel is reused.
    for archive, options, compiles in ((wheel, (), True),
                                       (sdist, ("--no-deps", "--force-reinstall"), False)):
        run(*pip, *options, archive, env=env)
        used = run(python, "-c", USE_A_LAYER, cwd=tmp_path, env=env)
        path, kernel = used.stdout.split()
        assert Path(path).is_relative_to(venv) and kernel == "True", archive.name
        notices = [line for line in used.stderr.splitlines() if line.startswith("pyg_attn: ")]
        if compiles:
            assert len(notices) == 2, used.stderr
            assert notices[0].startswith("pyg_attn: compiling the fused CPU attention kernel")
            assert notices[1].startswith("pyg_attn: fused CPU kernel built in ")
        else:
            assert notices == [], used.stderr

        info = run(venv / "bin" / "pyg-attn", "info", cwd=tmp_path, env=env)
        assert info.stdout.startswith(f"pyg_attn {pyg_attn.__version__}, torch 2.13.0")
        assert "fused CPU kernel: available" in info.stdout
        usage = run(python, "-m", "pyg_attn", "--help", cwd=tmp_path, env=env)
        assert usage.stdout.startswith("usage: pyg-attn")
