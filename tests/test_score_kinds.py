"""The score-kind table is the one source of the kinds in Python, C++ and Triton."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from pyg_attn.ops import graph_attention, prepare
from pyg_attn.ops.cpu import load_extension
from pyg_attn.ops.score_kinds import HEADER, KIND_IDS, SCORE_KINDS, cpp_header


def test_the_cpp_header_is_generated_from_the_table():
    assert HEADER.read_text(encoding="utf-8") == cpp_header(), \
        "csrc/score_kinds.h is stale: run python -m pyg_attn.ops.score_kinds"
    for kind, number in KIND_IDS.items():
        assert f"{kind.upper()} = {number}" in cpp_header()


def test_ids_are_positions_in_the_table():
    assert list(KIND_IDS) == list(SCORE_KINDS)
    assert sorted(KIND_IDS.values()) == list(range(len(SCORE_KINDS)))


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_triton_constants_come_from_the_table():
    from pyg_attn.ops.triton import common

    for kind, number in KIND_IDS.items():
        assert getattr(common, kind.upper()).value == number


@pytest.mark.skipif(load_extension() is None, reason="needs the fused CPU kernel")
def test_the_kernel_rejects_an_id_past_the_table():
    from pyg_attn.ops.library import fused_attention

    graph = prepare(torch.tensor([[0], [1]]), 2)
    q = torch.zeros(2, 1, 4)
    with pytest.raises(RuntimeError, match=rf"'kind' must be in \[0, {len(SCORE_KINDS)}\)"):
        fused_attention(len(SCORE_KINDS), graph.rowptr, graph.col, graph.perm, graph.colptr,
                        graph.csc_row, graph.csc_edge, q, q, q, None, None, None, None, None,
                        None, 1.0, 0.0, 0.0, False)
    # Every id of the table is accepted (dot needs nothing more than q, k, v).
    out = graph_attention(q, q, q, graph)
    assert out.shape == (2, 1, 4)
