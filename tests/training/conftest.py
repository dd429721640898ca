"""Fixtures of the training tests: a shared data cache and a tiny configuration."""
from __future__ import annotations

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
