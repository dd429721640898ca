"""SelfAttention: nn.MultiheadAttention's twin, plus edge_index and the graph view."""
from __future__ import annotations

import networkx as nx
import pytest
import torch

from pyg_attn.functional import complete_graph_edge_index
from pyg_attn.nn import SelfAttention

from ..graphs import random_graph

TOL = dict(atol=1e-5, rtol=1e-5)


def twins(embed_dim=8, num_heads=2, seed=0, **kwargs):
    """An MHA and a SelfAttention with the same (random, non-zero bias) weights."""
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(embed_dim, num_heads, **kwargs)
    with torch.no_grad():
        for param in mha.parameters():
            param.normal_(0.0, 0.5)
    ours = SelfAttention(embed_dim, num_heads, **kwargs)
    ours.load_state_dict(mha.state_dict())
    return mha.eval(), ours.eval()


def inputs(batch=3, length=5, source=None, embed_dim=8, kdim=None, vdim=None, seed=1,
           batch_first=False):
    gen = torch.Generator().manual_seed(seed)
    source = length if source is None else source

    def make(n, size):
        shape = (batch, n, size) if batch_first else (n, batch, size)
        return torch.randn(*shape, generator=gen, requires_grad=True)
    return make(length, embed_dim), make(source, kdim or embed_dim), make(source, vdim or embed_dim)


def assert_same(mha, ours, args, kwargs, rows=None):
    """Same outputs, weights and gradients; ``rows``: compare only these query rows."""
    expected = mha(*args, **kwargs)
    got = ours(*args, **kwargs)
    pick = (lambda t: t) if rows is None else rows
    torch.testing.assert_close(pick(got[0]), pick(expected[0]), **TOL)
    if expected[1] is None:
        assert got[1] is None
    else:
        torch.testing.assert_close(got[1], expected[1], **TOL)
    grad = torch.randn_like(expected[0])
    leaves = [t for t in args if t.requires_grad]
    for a, b in zip(torch.autograd.grad(pick(got[0] * grad).sum(), leaves, retain_graph=True),
                    torch.autograd.grad(pick(expected[0] * grad).sum(), leaves)):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_matches_multihead_attention(batch_first, need_weights, average):
    mha, ours = twins(batch_first=batch_first)
    q, k, v = inputs(source=7, batch_first=batch_first)
    assert_same(mha, ours, (q, k, v),
                dict(need_weights=need_weights, average_attn_weights=average))
    assert_same(mha, ours, (q, q, q), dict(need_weights=need_weights,
                                            average_attn_weights=average))


def test_state_dict_keys_and_loading_both_ways():
    mha, ours = twins()
    assert list(ours.state_dict()) == list(mha.state_dict()) == [
        "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    back = torch.nn.MultiheadAttention(8, 2)
    back.load_state_dict(ours.state_dict())
    q, k, v = inputs()
    torch.testing.assert_close(back(q, k, v)[0], ours(q, k, v)[0], **TOL)
    assert set(dict(ours.named_parameters())) == set(dict(mha.named_parameters()))


@pytest.mark.parametrize("kwargs", [
    dict(kdim=6, vdim=5), dict(bias=False), dict(add_bias_kv=True),
    dict(add_zero_attn=True), dict(add_bias_kv=True, add_zero_attn=True, kdim=3),
], ids=lambda kw: "-".join(kw))
def test_constructor_variants_match(kwargs):
    mha, ours = twins(**kwargs)
    assert list(ours.state_dict()) == list(mha.state_dict())
    q, k, v = inputs(source=6, kdim=kwargs.get("kdim"), vdim=kwargs.get("vdim"))
    padding = torch.zeros(3, 6, dtype=torch.bool)
    padding[0, 4:] = True
    causal = torch.ones(5, 6, dtype=torch.bool).triu(1)
    assert_same(mha, ours, (q, k, v), dict(key_padding_mask=padding, attn_mask=causal))


@pytest.mark.parametrize("kwargs", [dict(), dict(add_bias_kv=True), dict(add_zero_attn=True)],
                         ids=["plain", "bias_kv", "zero_attn"])
def test_a_single_key(kwargs):
    mha, ours = twins(batch_first=True, **kwargs)
    q, k, v = inputs(batch_first=True, source=1)
    padding = torch.tensor([[True], [False], [False]])
    expected, expected_weights = mha(q, k, v, key_padding_mask=padding)
    got, weights = ours(q, k, v, key_padding_mask=padding)
    rows = slice(None) if kwargs else slice(1, None)  # plain: sample 0 sees no key (MHA: NaN)
    torch.testing.assert_close(got[rows], expected[rows], **TOL)
    torch.testing.assert_close(weights[rows], expected_weights[rows], **TOL)
    if not kwargs:
        assert bool((weights[0] == 0).all())
        edges = torch.tensor([[0, 0, 0], [0, 1, 4]])
        _, sparse = ours(q, k, v, key_padding_mask=padding, edge_index=edges)
        torch.testing.assert_close(sparse[1:, [0, 1, 4]], torch.ones(2, 3, 1))
        assert bool((sparse[0] == 0).all())


def test_default_initialisation_matches_mha():
    torch.manual_seed(3)
    mha = torch.nn.MultiheadAttention(8, 2, add_bias_kv=True)
    torch.manual_seed(3)
    ours = SelfAttention(8, 2, add_bias_kv=True)
    for (name, a), (_, b) in zip(mha.state_dict().items(), ours.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_masks_keep_mha_meaning(mask_kind):
    mha, ours = twins(batch_first=True)
    q, k, v = inputs(batch_first=True, source=6)
    gen = torch.Generator().manual_seed(2)
    excluded = torch.rand(3 * 2, 5, 6, generator=gen) < 0.4
    excluded[..., 0] = False
    padding = torch.zeros(3, 6, dtype=torch.bool)
    padding[1, 3:] = True
    if mask_kind == "float":
        excluded = torch.randn(3 * 2, 5, 6, generator=gen)
        padding = torch.zeros(3, 6).masked_fill(padding, -1e4)
    for need_weights in (True, False):
        assert_same(mha, ours, (q, k, v), dict(attn_mask=excluded, key_padding_mask=padding,
                                                need_weights=need_weights))
        assert_same(mha, ours, (q, k, v), dict(attn_mask=excluded[0],
                                                need_weights=need_weights))


@pytest.mark.parametrize("need_weights", [True, False])
def test_fully_masked_rows_give_zeros_where_mha_gives_nan(need_weights):
    mha, ours = twins(bias=False)
    q, k, v = inputs()
    excluded = torch.zeros(5, 5, dtype=torch.bool)
    excluded[2] = True  # query 2 sees no key
    kwargs = dict(attn_mask=excluded, need_weights=need_weights)
    out, weights = ours(q, k, v, **kwargs)
    assert bool((out[2] == 0).all())  # no bias: the output row is zero
    if need_weights:
        assert bool((weights[:, 2] == 0).all())
    expected, _ = mha(q, k, v, **kwargs)
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(out[keep], expected[keep], **TOL)
    (out * torch.randn_like(out)).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("need_weights", [True, False])
def test_is_causal_alone_equals_mha_with_the_causal_mask(need_weights):
    mha, ours = twins(batch_first=True)
    q, _, _ = inputs(batch_first=True)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5)
    expected = mha(q, q, q, attn_mask=causal, is_causal=True, need_weights=need_weights)
    got = ours(q, q, q, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(got[0], expected[0], **TOL)
    also_mask = ours(q, q, q, attn_mask=causal, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(also_mask[0], expected[0], **TOL)
    if need_weights:
        torch.testing.assert_close(got[1], expected[1], **TOL)
        assert bool((got[1].triu(1) == 0).all())


def test_unbatched_inputs():
    mha, ours = twins()
    q, k, v = (t[:, 0].detach() for t in inputs())
    heads_mask = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(0)) < 0.3
    heads_mask[..., 1] = False
    padding = torch.tensor([False, False, True, False, False])
    for kwargs in (dict(), dict(average_attn_weights=False), dict(attn_mask=heads_mask),
                   dict(key_padding_mask=padding)):
        expected = mha(q, k, v, **kwargs)
        got = ours(q, k, v, **kwargs)
        torch.testing.assert_close(got[0], expected[0], **TOL)
        torch.testing.assert_close(got[1], expected[1], **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_complete_graph_edge_index_equals_dense(causal):
    _, ours = twins(batch_first=True)
    q, k, v = inputs(batch_first=True)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[2, 1:3] = True
    edge_index = complete_graph_edge_index(5, causal=causal)
    for need_weights in (True, False):
        dense = ours(q, k, v, key_padding_mask=padding, is_causal=causal,
                     need_weights=need_weights, average_attn_weights=False)
        sparse = ours(q, k, v, key_padding_mask=padding, need_weights=need_weights,
                      average_attn_weights=False, edge_index=edge_index)
        torch.testing.assert_close(sparse[0], dense[0], **TOL)
        if need_weights:
            torch.testing.assert_close(sparse[1], dense[1], **TOL)
        grads = [torch.autograd.grad(out.sum(), (q, k, v)) for out in (sparse[0], dense[0])]
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, **TOL)
    # is_causal on the full graph = the causal graph.
    full = ours(q, k, v, edge_index=complete_graph_edge_index(5), is_causal=True)
    causal_graph = ours(q, k, v, edge_index=complete_graph_edge_index(5, causal=True))
    torch.testing.assert_close(full[0], causal_graph[0], **TOL)


def test_edge_index_attends_only_along_edges():
    _, ours = twins(num_heads=2)
    q, k, v = inputs(source=7)
    edge_index = random_graph(7, 5, 12, seed=3, isolated=1, duplicates=2)
    per_head_mask = torch.rand(3 * 2, 5, 7, generator=torch.Generator().manual_seed(1)) < 0.2
    out, weights = ours(q, k, v, edge_index=edge_index, attn_mask=per_head_mask,
                        average_attn_weights=False)
    assert weights.shape == (3, 2, 5, 7)
    adjacency = torch.zeros(5, 7, dtype=torch.bool)
    adjacency[edge_index[1], edge_index[0]] = True
    assert bool((weights[:, :, ~adjacency] == 0).all())
    assert bool((weights.view(3, 2, 5, 7)[per_head_mask.view(3, 2, 5, 7)] == 0).all())
    sums = weights.sum(-1)
    assert bool((((sums - 1).abs() < 1e-5) | (sums == 0)).all())
    assert bool((sums[..., 4] == 0).all())  # the isolated query
    torch.testing.assert_close(out[4], ours.out_proj.bias.expand(3, 8))
    # The same edges as a bool mask on the dense path (duplicates aside).
    unique = torch.unique(edge_index, dim=1)
    dense = ours(q, k, v, attn_mask=~adjacency, average_attn_weights=False)
    sparse = ours(q, k, v, edge_index=unique, average_attn_weights=False)
    torch.testing.assert_close(sparse[0], dense[0], **TOL)
    torch.testing.assert_close(sparse[1], dense[1], **TOL)


def test_dropout_changes_output_not_reported_weights():
    _, ours = twins(dropout=0.5)
    q, _, _ = inputs()
    ours.eval()
    _, clean = ours(q, q, q)
    ours.train()
    torch.manual_seed(0)
    out_a, weights = ours(q, q, q)
    torch.manual_seed(1)
    out_b, _ = ours(q, q, q)
    torch.testing.assert_close(weights, clean)
    assert not torch.allclose(out_a, out_b)
    _, sparse_weights = ours(q, q, q, edge_index=complete_graph_edge_index(5))
    torch.testing.assert_close(sparse_weights, clean, **TOL)


def test_to_networkx_of_the_last_weights():
    _, ours = twins(num_heads=2, batch_first=True)
    with pytest.raises(RuntimeError, match="no attention weights"):
        ours.to_networkx()
    q, _, _ = inputs(batch_first=True, length=4)
    chain = torch.tensor([[0, 1, 2], [1, 2, 3]])
    ours(q, q, q, edge_index=chain)
    graph = ours.to_networkx(index=1, labels=["a", "b", "c", "d"])
    assert isinstance(graph, nx.DiGraph)
    assert sorted(graph.edges()) == [("a", "b"), ("b", "c"), ("c", "d")]
    assert graph.edges["a", "b"]["weight"] == pytest.approx(1.0)
    _, weights = ours(q, q, q, average_attn_weights=False)
    head = ours.to_networkx(index=2, head=1)
    assert head.number_of_edges() == 16
    assert head.edges[3, 1]["weight"] == pytest.approx(float(weights[2, 1, 1, 3].detach()))
    assert ours.to_networkx(threshold=0.3).number_of_edges() < 16
    ours(q, q, q, need_weights=False)  # keeps the last computed weights
    assert ours.to_networkx(index=2, head=1).edges[3, 1]["weight"] == head.edges[3, 1]["weight"]
    with pytest.raises(ValueError, match="index"):
        ours.to_networkx(index=3)
    with pytest.raises(ValueError, match="head"):
        ours.to_networkx(head=2)
    ours(q, q[:, :3], q[:, :3])
    with pytest.raises(ValueError, match="self-attention"):
        ours.to_networkx()


def test_repr_and_reset():
    ours = SelfAttention(16, num_heads=4)
    assert repr(ours) == "SelfAttention(16, num_heads=4)"
    ours.in_proj_bias.data.fill_(1.0)
    ours.reset_parameters()
    assert bool((ours.in_proj_bias == 0).all())
    assert ours.last_attention is None and "last_attention" not in ours.state_dict()


def test_errors():
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention(10, num_heads=3)
    with pytest.raises(ValueError, match="embed_dim"):
        SelfAttention(0)
    with pytest.raises(ValueError, match="dropout"):
        SelfAttention(8, dropout=1.5)
    ours = SelfAttention(8, num_heads=2)
    q, k, v = inputs()
    with pytest.raises(ValueError, match="query"):
        ours(q[0, 0], k, v)
    with pytest.raises(ValueError, match="'key'"):
        ours(q, k[0], v[0])
    with pytest.raises(TypeError, match="value"):
        ours(q, k, v.long())
    with pytest.raises(ValueError, match="features"):
        ours(q, k[..., :4], v)
    with pytest.raises(ValueError, match="same batch size"):
        ours(q, k[:3], v)
    with pytest.raises(ValueError, match="key_padding_mask"):
        ours(q, k, v, key_padding_mask=torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask"):
        ours(q, k, v, attn_mask=torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="attn_mask"):
        ours(q, k, v, attn_mask=torch.zeros(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="edge_index"):
        ours(q, k, v, edge_index=torch.tensor([[0, 5], [1, 1]]))
    with pytest.raises(ValueError, match="edge_index"):
        ours(q, k, v, edge_index=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="edge_index"):
        ours(q, k, v, edge_index=torch.tensor([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="add_bias_kv"):
        SelfAttention(8, add_bias_kv=True)(q, k, v, edge_index=torch.tensor([[0], [1]]))
