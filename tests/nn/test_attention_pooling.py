"""AttentionPooling against PyG's AttentionalAggregation, and its own guarantees."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import MLP, GraphConv
from torch_geometric.nn.aggr import AttentionalAggregation
from torch_geometric.utils import scatter

from pyg_attn.nn import AttentionPooling


def make_pair(in_channels: int = 6, out_channels: int = 5, *, gate_out: int = 1,
              with_nn: bool = True, mlp: bool = False, seed: int = 0):
    """Our layer and PyG's with the same weights."""
    torch.manual_seed(seed)
    if mlp:
        gate = MLP([in_channels, 8, gate_out], norm=None)
        net = MLP([in_channels, 8, out_channels], norm=None) if with_nn else None
    else:
        gate = torch.nn.Sequential(torch.nn.Linear(in_channels, 8), torch.nn.Tanh(),
                                   torch.nn.Linear(8, gate_out))
        net = torch.nn.Linear(in_channels, out_channels) if with_nn else None
    ours = AttentionPooling(gate, net)
    theirs = AttentionalAggregation(gate, net)
    return ours, theirs


def batch_vector(sizes, shuffle_seed=None):
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    if shuffle_seed is not None:
        generator = torch.Generator().manual_seed(shuffle_seed)
        index = index[torch.randperm(index.numel(), generator=generator)]
    return index


@pytest.mark.parametrize("with_nn", [False, True])
@pytest.mark.parametrize("gate_out", ["node", "feature"])
@pytest.mark.parametrize("mlp", [False, True])
def test_matches_pyg(with_nn, gate_out, mlp):
    out_channels = 5 if with_nn else 6
    ours, theirs = make_pair(out_channels=out_channels, with_nn=with_nn, mlp=mlp,
                             gate_out=1 if gate_out == "node" else out_channels)
    x = torch.randn(23, 6) * 3
    index = batch_vector([4, 1, 9, 6, 3], shuffle_seed=1)  # unsorted, as in MessagePassing
    torch.testing.assert_close(ours(x, index), theirs(x, index), rtol=1e-5, atol=1e-6)
    assert str(ours) == str(theirs).replace("AttentionalAggregation", "AttentionPooling")


def test_ptr_and_index_agree():
    ours, theirs = make_pair()
    x = torch.randn(12, 6)
    ptr = torch.tensor([0, 5, 5, 12])
    index = batch_vector([5, 0, 7])
    expected = theirs(x, index, dim_size=3)
    torch.testing.assert_close(ours(x, ptr=ptr), expected)
    torch.testing.assert_close(ours(x, index, ptr=ptr), expected)


def test_no_index_is_one_group():
    ours, theirs = make_pair()
    x = torch.randn(7, 6)
    out = ours(x)
    assert out.shape == (1, 5)
    torch.testing.assert_close(out, theirs(x))


def test_leading_dims_and_dim_argument():
    ours, theirs = make_pair(gate_out=5)
    x = torch.randn(3, 10, 6)
    index = batch_vector([2, 5, 3])
    torch.testing.assert_close(ours(x, index, dim=1), theirs(x, index, dim=1))
    assert ours(x, index, dim=-2).shape == (3, 3, 5)


def test_state_dict_loads_from_pyg():
    _, theirs = make_pair(seed=1)
    ours, _ = make_pair(seed=2)
    ours.load_state_dict(theirs.state_dict())
    x, index = torch.randn(9, 6), batch_vector([4, 5])
    torch.testing.assert_close(ours(x, index), theirs(x, index))


@pytest.mark.parametrize("gate_out", [1, 5])
def test_weights_sum_to_one_per_graph(gate_out):
    ours, _ = make_pair(gate_out=gate_out)
    x = torch.randn(20, 6) * 10
    index = batch_vector([3, 0, 8, 9], shuffle_seed=2)
    out, weights = ours(x, index, dim_size=5, return_attention_weights=True)
    assert weights.shape == (20, gate_out)
    assert bool((weights >= 0).all()) and bool((weights <= 1).all())
    sums = scatter(weights, index, 0, dim_size=5, reduce="sum")
    expected = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]).view(-1, 1).expand(5, gate_out)
    torch.testing.assert_close(sums, expected)
    # The output is the weighted sum those weights describe.
    assert ours.nn is not None
    torch.testing.assert_close(out, scatter(weights * ours.nn(x), index, 0, dim_size=5))


def test_permutation_invariant():
    ours, _ = make_pair(gate_out=5)
    x = torch.randn(30, 6)
    index = batch_vector([10, 12, 8])
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(3))
    out, weights = ours(x, index, return_attention_weights=True)
    out_p, weights_p = ours(x[perm], index[perm], return_attention_weights=True)
    torch.testing.assert_close(out_p, out)
    torch.testing.assert_close(weights_p, weights[perm])


def test_empty_graphs_and_dim_size():
    ours, theirs = make_pair()
    x = torch.randn(6, 6)
    index = torch.tensor([1, 1, 1, 3, 3, 3])  # graphs 0, 2 and 4 are empty
    out = ours(x, index, dim_size=5)
    assert out.shape == (5, 5)
    assert torch.equal(out[[0, 2, 4]], torch.zeros(3, 5))
    torch.testing.assert_close(out, theirs(x, index, dim_size=5))
    assert ours(x, index).shape == (4, 5)   # default: index.max() + 1
    empty = ours(torch.empty(0, 6), torch.empty(0, dtype=torch.long), dim_size=2)
    assert torch.equal(empty, torch.zeros(2, 5))


def test_large_scores_are_stable():
    gate = torch.nn.Linear(1, 1)
    with torch.no_grad():
        gate.weight.fill_(1.0)
        gate.bias.zero_()
    x = torch.tensor([[1000.0], [999.0], [-1000.0]])
    out, weights = AttentionPooling(gate)(x, torch.tensor([0, 0, 1]),
                                          return_attention_weights=True)
    assert torch.isfinite(out).all()
    e = torch.exp(torch.tensor(-1.0))
    torch.testing.assert_close(weights.view(-1), torch.stack([1 / (1 + e), e / (1 + e),
                                                              torch.tensor(1.0)]))


def test_gradients_match_pyg():
    ours, theirs = make_pair(gate_out=5)
    x = torch.randn(15, 6, requires_grad=True)
    index = batch_vector([5, 6, 4], shuffle_seed=4)
    grad_out = torch.randn(3, 5)
    ours(x, index).backward(grad_out)
    grads = [x.grad.clone()] + [p.grad.clone() for p in ours.parameters()]
    x.grad = None
    ours.zero_grad()
    theirs(x, index).backward(grad_out)
    expected = [x.grad] + [p.grad for p in theirs.parameters()]
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_gradcheck_double():
    torch.manual_seed(0)
    pool = AttentionPooling(torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)).double()
    x = torch.randn(8, 3, dtype=torch.double, requires_grad=True)
    index = torch.tensor([0, 2, 0, 0, 2, 2, 0, 2])
    assert torch.autograd.gradcheck(lambda inp: pool(inp, index, dim_size=3), (x,))


def test_as_message_passing_aggr():
    torch.manual_seed(0)
    ours, theirs = make_pair(in_channels=4, out_channels=4, with_nn=False)
    conv_ours = GraphConv(4, 3, aggr=ours)
    conv_theirs = GraphConv(4, 3, aggr=theirs)
    conv_theirs.load_state_dict(conv_ours.state_dict())
    x = torch.randn(10, 4)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 5],
                               [1, 2, 3, 0, 0, 6, 7, 8, 9, 5, 5, 1]])
    torch.testing.assert_close(conv_ours(x, edge_index), conv_theirs(x, edge_index))


def test_reset_parameters():
    ours, _ = make_pair(mlp=True)
    before = [p.clone() for p in ours.parameters()]
    ours.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, ours.parameters()))


def test_errors():
    with pytest.raises(TypeError, match="gate_nn"):
        AttentionPooling("linear")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'nn'"):
        AttentionPooling(torch.nn.Linear(3, 1), nn=lambda t: t)  # type: ignore[arg-type]
    pool = AttentionPooling(torch.nn.Linear(3, 1))
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match="index"):
        pool(x, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="index"):
        pool(x, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="dim_size"):
        pool(x, torch.tensor([0, 0, 1, 2]), dim_size=2)
    with pytest.raises(ValueError, match="ptr"):
        pool(x, ptr=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="gate_nn"):
        AttentionPooling(torch.nn.Linear(3, 2))(x, torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="dimension"):
        pool(x, torch.tensor([0, 0, 1, 1]), dim=2)
