"""Runs the Triton kernels under Triton's CPU interpreter when there is no GPU.

``@triton.jit`` picks the interpreter when it decorates a function, so
``TRITON_INTERPRET=1`` must be set before Triton is first imported (importing
``torch_geometric``, hence ``pyg_attn``, imports it).  This conftest sets it
before importing anything that does, which suffices when these tests run on
their own (``pytest tests/triton``) or first.  When the whole suite runs in one
process, earlier test modules have imported Triton already: then every test here
is skipped in that process and ``test_interpreter_subprocess.py`` runs this
directory again in a child process with the variable set, so the suite still
runs every kernel test exactly once.

Without a GPU the tests run the kernels on CPU tensors; with one, on CUDA
tensors with the compiled kernels (the variable is then not set).  Setting it
changes nothing else: the dispatcher picks Triton for CPU tensors only when
``backend="triton"`` is asked for.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from pyg_attn.ops.triton import interpreter_active, triton_importable  # noqa: E402

HERE = Path(__file__).resolve().parent
IN_PROCESS = triton_importable() and (torch.cuda.is_available() or interpreter_active())
"""Whether the kernel tests can run in this pytest process."""
SUBPROCESS_TEST = "test_interpreter_subprocess.py"
SMALL_CHUNK = 16
"""Edges per work item in the tests, so that hubs of tens of edges are split."""

if not triton_importable():
    collect_ignore_glob = ["test_*.py"]


def pytest_collection_modifyitems(config, items):
    if IN_PROCESS:
        return
    skip = pytest.mark.skip(reason="Triton was imported before TRITON_INTERPRET=1 was set; "
                                   f"{SUBPROCESS_TEST} runs these tests in a child process")
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if path.parent == HERE and path.name != SUBPROCESS_TEST:
            item.add_marker(skip)


@pytest.fixture
def device() -> torch.device:
    """CUDA when available (compiled kernels), else the CPU (interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Splits every row longer than :data:`SMALL_CHUNK` edges into work items."""
    from pyg_attn.ops.triton import fused_attention

    monkeypatch.setattr(fused_attention, "CHUNK_SIZE", SMALL_CHUNK)
