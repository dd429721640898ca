"""sparsify_attention against a per-destination loop."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.analysis import sparsify_attention
from pyg_attn.convert import dense_to_edge_index

from ..attention_data import random_dense_attention, random_edge_attention


def kept_by_loop(edge_index, score, top_k=None, top_p=None):
    """Edge ids kept, destination by destination, in plain Python."""
    kept = set()
    for i in edge_index[1].unique().tolist():
        ids = (edge_index[1] == i).nonzero().view(-1).tolist()
        ids.sort(key=lambda e: (-float(score[e]), e))
        if top_k is not None:
            kept.update(ids[:top_k])
            continue
        total = sum(float(score[e]) for e in ids)
        mass = 0.0
        for e in ids:
            if mass >= top_p * total * (1 - 1e-6) or float(score[e]) == 0:
                break
            kept.add(e)
            mass += float(score[e])
    return sorted(kept)


@pytest.mark.parametrize("heads", [None, 3])
@pytest.mark.parametrize("criterion", [{"top_k": 1}, {"top_k": 3}, {"top_p": 0.5},
                                       {"top_p": 0.9}, {"top_p": 1.0}])
def test_top_k_and_top_p(heads, criterion):
    edge_index, alpha = random_edge_attention(30, 150, heads=heads, seed=41, isolated=2)
    score = alpha if heads is None else alpha.mean(1)
    result = sparsify_attention((edge_index, alpha), **criterion)
    ids = kept_by_loop(edge_index, score, **criterion)
    assert torch.equal(result.edge_index, edge_index[:, ids])
    assert torch.equal(result.alpha, alpha[ids])
    assert result.kept_mass == pytest.approx(float(alpha[ids].sum() / alpha.sum()))


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    edge_index = torch.tensor([[0, 1, 2, 3], [4, 4, 4, 4]])
    alpha = torch.tensor([0.1, 0.5, 0.3, 0.1])
    assert sparsify_attention((edge_index, alpha), top_p=0.5).edge_index[0].tolist() == [1]
    assert sparsify_attention((edge_index, alpha), top_p=0.8).edge_index[0].tolist() == [1, 2]
    assert sparsify_attention((edge_index, alpha), top_p=0.81).edge_index[0].tolist() == \
        [0, 1, 2]  # ties (0.1, 0.1): the earlier edge


def test_threshold_and_renormalize():
    attn = random_dense_attention(2, 10, 10, seed=42)
    edge_index, alpha = dense_to_edge_index(attn)
    result = sparsify_attention(attn, threshold=0.1, renormalize=True)
    keep = alpha.mean(1) >= 0.1
    assert torch.equal(result.edge_index, edge_index[:, keep])
    sums = torch.zeros(10, 2, dtype=alpha.dtype).index_add_(0, result.edge_index[1],
                                                            result.alpha)
    has_edges = torch.zeros(10, dtype=torch.bool)
    has_edges[result.edge_index[1]] = True
    assert torch.allclose(sums[has_edges], torch.ones_like(sums[has_edges]))
    assert result.kept_mass == pytest.approx(float(alpha[keep].sum() / alpha.sum()))
    nothing = sparsify_attention(attn, threshold=2.0)
    assert nothing.edge_index.shape == (2, 0) and nothing.kept_mass == 0.0


def test_empty_attention():
    empty = (torch.empty(2, 0, dtype=torch.long), torch.empty(0))
    result = sparsify_attention(empty, top_p=0.5, num_nodes=3)
    assert result.edge_index.shape == (2, 0) and result.kept_mass == 1.0


@pytest.mark.parametrize("kwargs, error, match", [
    ({}, ValueError, "exactly one"),
    ({"top_k": 2, "top_p": 0.5}, ValueError, "exactly one"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"top_k": 1.5}, ValueError, "top_k"),
    ({"top_p": 0.0}, ValueError, "top_p"),
    ({"top_p": 1.5}, ValueError, "top_p"),
])
def test_rejects(kwargs, error, match):
    edge_index, alpha = random_edge_attention(5, 10, seed=43)
    with pytest.raises(error, match=match):
        sparsify_attention((edge_index, alpha), **kwargs)
    with pytest.raises(ValueError, match="alpha"):
        sparsify_attention((edge_index, alpha[:-1]), top_k=1)
    with pytest.raises(TypeError, match="attention"):
        sparsify_attention("edges", top_k=1)
