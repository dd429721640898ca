"""Runs this directory's kernel tests in a child process when this one cannot.

See ``conftest.py``: in a whole-suite run Triton is imported (by
``torch_geometric``) before ``TRITON_INTERPRET=1`` can take effect, so the
kernel tests are skipped here and run once in a fresh interpreter instead.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import HERE, IN_PROCESS


@pytest.mark.skipif(IN_PROCESS, reason="the kernel tests run in this process")
def test_kernel_tests_pass_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    root = HERE.parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
         "-W", "ignore::DeprecationWarning"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    assert " passed" in result.stdout
