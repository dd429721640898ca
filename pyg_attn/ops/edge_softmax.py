"""Segment softmax over edges grouped by destination (``torch_geometric.utils.softmax``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .attention import _check_float, _run
from .csr import CACHE_SIZE, PreparedGraph, _graph, _pointer, validate_edge_index
from .identity_cache import IdentityCache


_graphs = IdentityCache(CACHE_SIZE)


@torch.compiler.disable
def _grouped(index: Tensor, num_nodes: int) -> PreparedGraph:
    """``index`` as a graph from one dummy source, cached per index tensor."""
    stamp = (index._version, num_nodes)
    graph = _graphs.get(index, (), stamp)
    if graph is None:
        edge_index = torch.stack([torch.zeros_like(index), index]).long()
        validate_edge_index(edge_index, 1, num_nodes, name="index")
        graph = _graphs.put(index, (), stamp, _group_graph(edge_index, num_nodes))
    return graph


def _group_graph(edge_index: Tensor, num_nodes: int) -> PreparedGraph:
    """The graph of the edges ``0 -> index[e]`` (``edge_index`` = ``[zeros, index]``),
    built without the general sorts.

    Already sorted groups (a PyG ``batch`` vector, a CSR-ordered edge list) keep
    their order; others take one stable sort.  The source side has one node, so its
    CSC is the CSR order itself.  Edge softmax is run for every new batch, so this
    matters there.
    """
    sources, index = edge_index
    num_edges = index.numel()
    positions = torch.arange(num_edges, device=index.device)
    is_sorted = num_edges < 2 or bool((index[1:] >= index[:-1]).all())
    perm = positions if is_sorted else torch.argsort(index, stable=True)
    return _graph(1, num_nodes, _pointer(index, num_nodes), sources, perm,
                  _pointer(sources, 1), perm, index.index_select(0, perm))


def edge_softmax(src: Tensor, index: Tensor, num_nodes: Optional[int] = None, *,
                 backend: Optional[str] = None) -> Tensor:
    r"""Softmax of edge scores over the edges that share a destination.

    .. math::
        \text{out}_e = \frac{\exp(\text{src}_e - m_{g})}{\sum_{e' : \text{index}_{e'} = g}
        \exp(\text{src}_{e'} - m_{g})}, \qquad g = \text{index}_e,\;
        m_g = \max_{e' : \text{index}_{e'} = g} \text{src}_{e'}

    The same result as :func:`torch_geometric.utils.softmax` (up to rounding),
    stable for scores of any magnitude; scores of ``-inf`` get weight 0 and a group
    made only of them sums to 0 (PyG gives NaN there).

    Args:
        src: ``[E]`` or ``[E, H]`` scores.
        index: ``[E]`` group (destination) of each score.
        num_nodes: number of groups; ``None`` = ``index.max() + 1``.
        backend: ``None`` (automatic), ``"reference"``, ``"cpu"`` or ``"triton"``.

    Returns:
        A tensor shaped like ``src``; ``E == 0`` gives an empty tensor.

    Example:
        >>> import torch
        >>> edge_softmax(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0, 0, 1])).tolist()
        [0.5, 0.5, 1.0]
    """
    _check_float("src", src, (1, 2))
    if not isinstance(index, Tensor) or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise TypeError(f"'index' must be an integer tensor, got {getattr(index, 'dtype', type(index).__name__)}")
    if index.dim() != 1 or index.numel() != src.size(0):
        raise ValueError(f"'index' must have shape [{src.size(0)}] to match 'src', got {list(index.shape)}")
    if num_nodes is None:
        num_nodes = int(index.max()) + 1 if index.numel() else 0
    graph = _grouped(index, num_nodes)
    scores = src.unsqueeze(-1) if src.dim() == 1 else src
    heads = scores.size(1)
    empty_dst = scores.new_zeros(num_nodes, heads, 0)
    empty_src = scores.new_zeros(1, heads, 0)
    features = {"dst": empty_dst, "src": empty_src, "value": empty_src, "att": None,
                "edge_score": scores, "edge_feat": None, "edge_value": None}
    _, alpha = _run("edge", graph, num_nodes, features, None, scale=1.0, negative_slope=0.0,
                    dropout=0.0, training=False, return_attention=True, backend=backend)
    return alpha.view_as(src)
