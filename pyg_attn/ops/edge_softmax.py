"""Segment softmax over edges grouped by destination (``torch_geometric.utils.softmax``)."""
from __future__ import annotations

import torch
from torch import Tensor

from .attention import check_float, run_attention, select_backend
from .library import segment_softmax_cpu


@torch.compiler.disable
def _checked_num_groups(index: Tensor, num_nodes: int | None) -> int:
    """``num_nodes`` (``index.max() + 1`` for ``None``) after checking that every
    entry of ``index`` lies in ``[0, num_nodes)``.  Data-dependent, so it runs
    eagerly under ``torch.compile`` (one graph break)."""
    if num_nodes is not None and (isinstance(num_nodes, bool) or not isinstance(num_nodes, int)
                                  or num_nodes < 0):
        raise ValueError(f"'num_nodes' must be a non-negative int or None, got {num_nodes!r}")
    if index.numel():
        low, high = (int(v) for v in torch.aminmax(index))
        if low < 0:
            raise ValueError(f"'index' must be non-negative, got {low}")
        if num_nodes is None:
            num_nodes = high + 1
        elif high >= num_nodes:
            raise ValueError(f"'index' holds {high}, outside [0, num_nodes={num_nodes})")
    elif num_nodes is None:
        num_nodes = 0
    return num_nodes


def edge_softmax(src: Tensor, index: Tensor, num_nodes: int | None = None, *,
                 backend: str | None = None) -> Tensor:
    r"""Softmax of edge scores over the edges that share a destination.

    .. math::
        \text{out}_e = \frac{\exp(\text{src}_e - m_{g})}{\sum_{e' : \text{index}_{e'} = g}
        \exp(\text{src}_{e'} - m_{g})}, \qquad g = \text{index}_e,\;
        m_g = \max_{e' : \text{index}_{e'} = g} \text{src}_{e'}

    The same result as :func:`torch_geometric.utils.softmax` (up to rounding),
    stable for scores of any magnitude; scores of ``-inf`` get weight 0 and a group
    made only of them sums to 0 (PyG gives NaN there).  On the CPU a new ``index``
    costs one O(E) pass (no sort, no cached grouping): groups that come sorted, as
    a PyG ``batch`` vector or destination-sorted edges, are split over threads,
    others are computed in one thread.  Gradients of any order on the reference
    and CPU backends; the Triton backend has no double backward.

    Parameters
    ----------
    src : Tensor
        ``[E]`` or ``[E, H]`` floating-point scores.
    index : Tensor
        ``[E]`` integer group (destination) of each score, on ``src``'s device.
    num_nodes : int, optional
        Number of groups; ``None`` = ``index.max() + 1``.
    backend : str, optional
        ``None`` (automatic), ``"reference"``, ``"cpu"`` or ``"triton"`` (see
        :func:`~pyg_attn.ops.select_backend`).

    Returns
    -------
    Tensor
        ``[E]`` or ``[E, H]``, shaped like ``src``; ``E == 0`` gives an empty
        tensor.

    Raises
    ------
    TypeError
        If ``src`` is not a floating-point tensor or ``index`` not an integer
        tensor.
    ValueError
        If the shapes or devices do not match, or ``index`` holds an entry
        outside ``[0, num_nodes)``.

    Examples
    --------
    >>> import torch
    >>> edge_softmax(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0, 0, 1])).tolist()
    [0.5, 0.5, 1.0]
    """
    check_float("src", src, (1, 2))
    if not isinstance(index, Tensor) or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise TypeError("'index' must be an integer tensor, got "
                        f"{getattr(index, 'dtype', type(index).__name__)}")
    if index.dim() != 1 or index.numel() != src.size(0):
        raise ValueError(f"'index' must have shape [{src.size(0)}] to match 'src', got "
                         f"{list(index.shape)}")
    if index.device != src.device:
        raise ValueError(f"'index' is on {index.device} but 'src' is on {src.device}")
    num_nodes = _checked_num_groups(index, num_nodes)
    scores = src.unsqueeze(-1) if src.dim() == 1 else src
    if select_backend(backend, src.device) == "cpu":
        compute = scores if scores.dtype in (torch.float32, torch.float64) else scores.float()
        alpha = segment_softmax_cpu(compute.contiguous(), index.long().contiguous(), num_nodes)
        return alpha.to(src.dtype).view_as(src)
    graph = torch.stack([torch.zeros_like(index), index])  # edges 0 -> index[e]
    heads = scores.size(1)
    empty_dst = scores.new_zeros(num_nodes, heads, 0)
    empty_src = scores.new_zeros(1, heads, 0)
    features = {"dst": empty_dst, "src": empty_src, "value": empty_src, "att": None,
                "edge_score": scores, "edge_feat": None, "edge_value": None}
    _, weights = run_attention("edge", graph, num_nodes, features, None, scale=1.0,
                               negative_slope=0.0, dropout=0.0, training=False,
                               return_attention=True, backend=backend)
    assert weights is not None  # asked for with return_attention=True
    return weights.view_as(src)
