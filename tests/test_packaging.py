"""The sdist and wheel build (without isolation) and carry the kernel source and data."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sdist_and_wheel_build(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("pyg_attn-*.whl"))
    sdist = next(tmp_path.glob("pyg_attn-*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    sources = [f"pyg_attn/ops/csrc/{path.name}"
               for path in (ROOT / "pyg_attn" / "ops" / "csrc").glob("*.[ch]*")]
    assert len(sources) >= 4  # the .cpp and the headers it includes
    for required in ("pyg_attn/py.typed", *sources,
                     "pyg_attn/visualization/explorer.html",
                     "pyg_attn/data/planetoid/Cora/raw/ind.cora.x", "pyg_attn/data/LICENSES.md"):
        assert required in names, required
    assert any(n.endswith("LICENSE") for n in names)
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    for source in sources:
        assert any(n.endswith(source) for n in names), source
