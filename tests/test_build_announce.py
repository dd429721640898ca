"""The fused CPU kernel's build is never silent: announced before, reported after,
and a cached build loads without a word (and without compiling)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_attn.ops import cpu

REPO = Path(__file__).resolve().parents[1]

#: Loads the kernel twice and prints whether it is there.
LOAD_TWICE = """
from pyg_attn.ops.cpu import load_extension
load_extension()
print("kernel", load_extension() is not None)
"""


def load_in_subprocess(**env: str) -> subprocess.CompletedProcess:
    """Runs :data:`LOAD_TWICE` in a fresh interpreter with ``env`` added."""
    full = dict(os.environ, PYTHONPATH=str(REPO), **env)
    full.pop("PYG_ATTN_DISABLE_CPP", None)
    return subprocess.run([sys.executable, "-W", "always", "-c", LOAD_TWICE], env=full,
                          capture_output=True, text=True, timeout=600)


def test_notice_says_what_why_how_long_and_how_to_build_ahead():
    notice = cpu.build_notice("/cache/pyg_attn_fused_cpu_0123")
    assert "\n" not in notice
    for part in ("compiling the fused CPU attention kernel", "installed torch", "once",
                 "under two minutes", "/cache/pyg_attn_fused_cpu_0123",
                 "python -m pyg_attn build-ext` does this ahead of time"):
        assert part in notice, part


def test_cache_name_changes_with_torch_flags_and_nothing_else(monkeypatch):
    cflags, ldflags = cpu.build_flags()
    name = cpu.extension_name(cflags, ldflags)
    assert name.startswith("pyg_attn_fused_cpu_") and cpu.extension_name(cflags, ldflags) == name
    assert cpu.extension_name([*cflags, "-g"], ldflags) != name
    monkeypatch.setattr(torch, "__version__", torch.__version__ + ".other")
    assert cpu.extension_name(cflags, ldflags) != name


def test_failed_build_announces_once_then_warns_once(tmp_path):
    done = load_in_subprocess(CXX=str(tmp_path / "no-such-compiler"),
                              TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["kernel", "False"]
    lines = done.stderr.splitlines()
    notices = [i for i, line in enumerate(lines) if line.startswith("pyg_attn: compiling")]
    warned = [i for i, line in enumerate(lines) if "could not be built" in line]
    assert len(notices) == 1 and len(warned) == 1 and notices[0] < warned[0]
    assert str(tmp_path / "ext") in lines[notices[0]]
    assert not any("built in" in line for line in lines)


def test_cached_build_loads_silently():
    if cpu.load_extension() is None:  # builds it here (announced) if not cached yet
        pytest.skip("the fused CPU kernel cannot be built here")
    done = load_in_subprocess()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["kernel", "True"]
    assert "pyg_attn:" not in done.stderr
