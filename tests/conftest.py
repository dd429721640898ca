"""Shared graph builders for the tests: every edge case the ops must handle."""
from __future__ import annotations

import os

import pytest
import torch

# Without a GPU the Triton kernel tests run under Triton's CPU interpreter, which must
# be chosen before Triton is first imported (torch_geometric imports it): setting it
# here, before any test module loads, lets tests/triton run in this process.  It
# changes nothing else (the dispatcher uses Triton on CPU only when asked to).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from .graphs import random_graph

GRAPHS = {
    # name: (num_src, num_dst, edge_index builder)
    "random": (40, 40, lambda: random_graph(40, 40, 200, seed=1)),
    "isolated": (30, 30, lambda: random_graph(30, 30, 90, seed=2, isolated=8)),
    "hub": (60, 60, lambda: random_graph(60, 60, 100, seed=3, hub=5, hub_degree=400)),
    "self_loops_duplicates": (25, 25, lambda: random_graph(25, 25, 80, seed=4, self_loops=20,
                                                           duplicates=30)),
    "empty": (10, 10, lambda: torch.empty(2, 0, dtype=torch.long)),
    "bipartite": (35, 12, lambda: random_graph(35, 12, 100, seed=5, isolated=2)),
    "batch_of_small": (60, 60, lambda: torch.cat(
        [random_graph(6, 6, 10, seed=10 + b) + 6 * b for b in range(10)], dim=1)),
}


@pytest.fixture(params=sorted(GRAPHS))
def graph(request):
    num_src, num_dst, build = GRAPHS[request.param]
    return request.param, num_src, num_dst, build()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
