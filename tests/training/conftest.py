"""Fixtures of the training tests: a shared data cache, a tiny configuration and a
runner for the benchmark scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from pyg_attn.datasets import CACHE_ENV, DATA_ENV


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    """One cache folder for the session: Cora is processed once, not per test."""
    return tmp_path_factory.mktemp("pyg_attn_cache")


@pytest.fixture
def shipped_data(data_cache, monkeypatch):
    """The shipped data sets, processed into the session cache (never the user's)."""
    monkeypatch.setenv(CACHE_ENV, str(data_cache))
    monkeypatch.delenv(DATA_ENV, raising=False)
    return data_cache


@pytest.fixture
def tiny(shipped_data, tmp_path):
    """Keyword arguments of a small, fast TrainConfig on Cora writing to tmp_path."""
    return dict(dataset="Cora", model="gat", hidden=2, heads=2, epochs=4,
                out=str(tmp_path / "out"))


@pytest.fixture
def run_benchmark(shipped_data) -> Callable[..., subprocess.CompletedProcess]:
    """``run_benchmark(script, *args)``: runs ``benchmarks/<script>`` with the repository
    importable and the shipped data; fails the test unless it exits 0."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))

    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, str(root / "benchmarks" / script), *args],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done
    return run
