"""Fused edge attention: public ops, input checks and the one backend dispatcher.

Conventions (docs/guide/conventions.md): ``edge_index[0]`` = source ``j``,
``edge_index[1]`` = destination ``i``; node ``i`` attends over its incoming edges
``j -> i``; duplicate edges are separate edges and self-loops ordinary edges; a
destination with no (unmasked) edge gets a zero output and zero attention.
``alpha`` is returned in the caller's edge order, before dropout.

Backends: ``"reference"`` (pure PyTorch, any device, any order of gradients),
``"cpu"`` (fused C++ kernel, CPU tensors; the default there), ``"triton"``
(Triton kernels, CUDA tensors; the default there when Triton is importable; CPU
tensors too under ``TRITON_INTERPRET=1``, which the tests use).  The reference
and CPU backends compute float16 and bfloat16 inputs in float32 and cast back;
the Triton kernels read them as they are and accumulate in float32.
"""
from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable

import torch
from torch import Tensor
from torch.fx.experimental.symbolic_shapes import guard_or_false

from .cpu import extension_available
from .dropout import draw_seed
from .graph import PreparedGraph, plain_edge_index, validate_edge_index
from .graph_build import as_prepared
from .library import fused_attention_cpu
from .reference import reference_attention
from .score_kinds import KIND_IDS
from .spec import CPU_OP, FEATURES
from .triton import interpreter_active, interpreter_enabled, triton_importable

BACKENDS = ("reference", "cpu", "triton")
#: The most bytes of attention ``[E, H]`` the CPU op's forward keeps for its
#: backward.  Up to about a core's L2 cache, reading it back beats recomputing it
#: (each edge's exp: a fifth of the backward; 7-10 % of a molecule batch's forward
#: and backward); beyond, its reads by edge id miss the cache and cost more than
#: the recomputation, which also keeps the memory low on large graphs.
SAVED_ATTENTION_BYTES = 2 << 20
GraphInput = Tensor | PreparedGraph
#: What the attention ops return: ``out``, or ``(out, alpha)`` with ``return_attention=True``.
AttentionOutput = Tensor | tuple[Tensor, Tensor]

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def select_backend(backend: str | None, device: torch.device) -> str:
    """Picks the backend for tensors on ``device`` (the only place that decides).

    ``None`` means: the fused CPU kernel for CPU tensors when it is built, the
    Triton kernels for CUDA tensors when Triton is importable, else the
    reference path (with one warning).  ``"triton"`` can be forced on CUDA
    tensors, and on CPU tensors when ``TRITON_INTERPRET=1`` (Triton's interpreter,
    for tests; set it before Triton is first imported, e.g. by torch_geometric).

    Parameters
    ----------
    backend : str, optional
        ``None`` (automatic), ``"reference"``, ``"cpu"`` or ``"triton"``.
    device : torch.device
        Device of the inputs.

    Returns
    -------
    str
        The backend that runs: ``"reference"``, ``"cpu"`` or ``"triton"``.

    Raises
    ------
    ValueError
        If ``backend`` is not one of these names, or is ``"cpu"`` for
        non-CPU tensors.
    RuntimeError
        If the requested ``"cpu"`` or ``"triton"`` backend is not available.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"'backend' must be one of {BACKENDS} or None, got {backend!r}")
    if backend == "reference":
        return backend
    if backend == "triton" or (backend is None and device.type == "cuda"):
        missing = _triton_missing(device)
        if missing is None:
            return "triton"
        if backend == "triton":
            raise RuntimeError(f"'backend'='triton' is not available here: {missing}")
    if device.type == "cpu":
        if extension_available():
            return "cpu"
        if backend == "cpu":
            raise RuntimeError("'backend'='cpu' was requested but the fused CPU kernel "
                               "could not be built (see the earlier warning)")
        return "reference"
    if backend == "cpu":
        raise ValueError(f"'backend'='cpu' needs CPU tensors, got device {device}")
    reason = _triton_missing(device) if device.type == "cuda" else None
    _warn_once(f"fallback-{device.type}",
               f"pyg_attn: no fused kernel for device '{device.type}'"
               f"{'' if reason is None else f' ({reason})'}; using the reference backend")
    return "reference"


def _triton_missing(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on ``device``, or ``None`` if they can."""
    if not triton_importable():
        return "Triton is not installed (pip install 'pyg-attn[triton]')"
    if device.type == "cuda" or (device.type == "cpu" and interpreter_active()):
        return None
    if device.type == "cpu" and interpreter_enabled():
        return ("TRITON_INTERPRET=1 was set after Triton was imported; set it before "
                "importing torch_geometric or pyg_attn")
    if device.type == "cpu":
        return "CPU tensors need TRITON_INTERPRET=1 (Triton's interpreter)"
    return f"Triton kernels need CUDA tensors, got device '{device.type}'"


# ----------------------------------------------------------------------------- checks
def check_float(name: str, t: Tensor, dims: tuple[int, ...]) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"'{name}' must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() not in dims:
        raise ValueError(f"'{name}' must have {' or '.join(map(str, dims))} dimensions, "
                         f"got shape {list(t.shape)}")


def _check_shape(name: str, t: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(t.shape) != expected:
        raise ValueError(f"'{name}' must have shape {list(expected)}, got {list(t.shape)}")


def _check_finite(named: dict[str, Tensor | None]) -> None:
    for name, t in named.items():
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"'{name}' holds NaN or infinite values")


def _per_edge(name: str, t: Tensor | None, num_edges: int, heads: int,
              trailing: tuple[int, ...] = ()) -> Tensor | None:
    """Checks a per-edge tensor and broadcasts ``[E]`` to ``[E, H]`` (scores only)."""
    if t is None:
        return None
    check_float(name, t, (1, 2, 3))
    if not trailing and t.dim() == 1:
        _check_shape(name, t, (num_edges,))
        return t.unsqueeze(-1).expand(num_edges, heads)
    _check_shape(name, t, (num_edges, heads, *trailing))
    return t


def _check_mask(edge_mask: Tensor | None, num_edges: int) -> Tensor | None:
    if edge_mask is None:
        return None
    if not isinstance(edge_mask, Tensor) or edge_mask.dtype != torch.bool:
        raise TypeError("'edge_mask' must be a bool tensor (True = the edge takes part), got "
                        f"{getattr(edge_mask, 'dtype', type(edge_mask).__name__)}")
    _check_shape("edge_mask", edge_mask, (num_edges,))
    return edge_mask


def _num_edges(edge_index: GraphInput) -> int:
    if isinstance(edge_index, PreparedGraph):
        return edge_index.num_edges
    if not isinstance(edge_index, Tensor):
        raise TypeError("'edge_index' must be a LongTensor [2, E] or a PreparedGraph, got "
                        f"{type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, E], got {list(edge_index.shape)}")
    return edge_index.size(1)


# ----------------------------------------------------------------------------- core
#: The features the CPU kernel takes with any row stride (:func:`rows_contiguous`).
ROW_FEATURES = ("dst", "src", "value")


def rows_contiguous(t: Tensor) -> bool:
    """Whether each row ``t[n]`` of ``t [N, H, D]`` is one contiguous block (the rows
    any non-negative stride apart), as the CPU kernel reads node features."""
    return t.dim() == 3 and (t.size(2) <= 1 or t.stride(2) == 1) \
        and (t.size(1) <= 1 or t.stride(1) == t.size(2)) and t.stride(0) >= 0


def run_attention(kind: str, edge_index: GraphInput, num_dst: int,
                  features: dict[str, Tensor | None],
         edge_mask: Tensor | None, *, scale: float, negative_slope: float, dropout: float,
         training: bool, return_attention: bool, backend: str | None
         ) -> tuple[Tensor, Tensor | None]:
    """Validates the graph, dispatches, and returns ``(out, alpha or None)``."""
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"'dropout' must be in [0, 1], got {dropout}")
    present = {k: v for k, v in features.items() if v is not None}
    devices = {t.device for t in present.values()}
    if len(devices) > 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")
    device = next(iter(devices))
    if edge_index.device != device:
        raise ValueError(f"'edge_index' is on {edge_index.device} but the features are on {device}")
    result_dtype = functools.reduce(torch.promote_types, (t.dtype for t in present.values()))
    chosen = select_backend(backend, device)
    compute_dtype = result_dtype if result_dtype in (torch.float32, torch.float64) \
        or chosen == "triton" else torch.float32
    # One conversion per tensor (e.g. edge_key is edge_value), found by identity
    # without id(): torch.compile would guard on the object ids and recompile per call.
    converted: list[tuple[Tensor, bool, Tensor]] = []

    def convert(t: Tensor | None, rows: bool) -> Tensor | None:
        if t is None:
            return None
        for original, as_rows, done in converted:
            if original is t and as_rows == rows:
                return done
        done = _as_dtype(t, compute_dtype)
        converted.append((t, rows, done if rows and rows_contiguous(done) else done.contiguous()))
        return converted[-1][2]

    # The CPU kernel reads node features row by row: views of a wider buffer (GATConv's
    # joint product) are passed as they are, without a copy.
    cast = {k: convert(v, chosen == "cpu" and k in ROW_FEATURES) for k, v in features.items()}
    dst, src, value = cast["dst"], cast["src"], cast["value"]
    assert dst is not None and src is not None and value is not None, \
        "every caller passes the dst, src and value features"
    num_src = src.size(0)
    p = float(dropout) if training else 0.0
    seed = draw_seed(device) if p > 0.0 else None
    alpha: Tensor | None
    if chosen == "reference":
        if isinstance(edge_index, PreparedGraph):
            as_prepared(edge_index, num_src, num_dst)
            index = edge_index.edge_index
        else:
            validate_edge_index(edge_index, num_src, num_dst)
            index = plain_edge_index(edge_index).long()
        out, alpha = reference_attention(
            kind, index, num_dst, dst, src, value, att=cast["att"],
            edge_score=cast["edge_score"], edge_feat=cast["edge_feat"],
            edge_value=cast["edge_value"], edge_mask=edge_mask, scale=scale,
            negative_slope=negative_slope, dropout=p, seed=seed)
        alpha = alpha if return_attention else None
    else:
        graph = as_prepared(edge_index, num_src, num_dst)
        need_alpha = bool(return_attention) or (
            chosen == "cpu" and _keeps_attention(graph.num_edges, value, present.values()))
        # The fused ops' arguments after the graph (pyg_attn.ops.spec).
        args = (*(cast[name] for name in FEATURES),
                None if edge_mask is None else edge_mask.contiguous(), seed, float(scale),
                float(negative_slope), p, need_alpha)
        if chosen == "triton":
            from .triton.fused_attention import fused_attention_triton

            out, _stats, alpha = fused_attention_triton(KIND_IDS[kind], graph, *args)
        else:
            out, _lse, alpha = fused_attention_cpu(KIND_IDS[kind], *CPU_OP.graph_tensors(graph),
                                                   *args)
            alpha = alpha if return_attention else None
    return _as_dtype(out, result_dtype), (None if alpha is None else _as_dtype(alpha, result_dtype))


def _keeps_attention(num_edges: int, value: Tensor, features: Iterable[Tensor]) -> bool:
    """Whether the CPU op's forward keeps the attention ``[E, H]`` for its backward
    (which then reads it instead of recomputing it): when a gradient may follow
    and it takes at most :data:`SAVED_ATTENTION_BYTES` (``value [N, H, Cv]`` in the
    compute dtype).  Under ``torch.compile`` a size that is not known at trace
    time counts as too large."""
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in features)):
        return False
    size = num_edges * value.size(1) * value.element_size()
    return guard_or_false(size <= SAVED_ATTENTION_BYTES)


def _as_dtype(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)``, skipping the call (a few microseconds of argument handling
    per tensor and layer call) when ``t`` already has it."""
    return t if t.dtype == dtype else t.to(dtype)


def _finish(out: Tensor, alpha: Tensor | None, squeeze: bool, return_attention: bool
            ) -> AttentionOutput:
    if squeeze:
        out = out.squeeze(1)
        alpha = None if alpha is None else alpha.squeeze(1)
    if not return_attention:
        return out
    assert alpha is not None, "run_attention returns alpha when return_attention is set"
    return out, alpha


def graph_attention(query: Tensor, key: Tensor, value: Tensor, edge_index: GraphInput, *,
                    scale: float | None = None, edge_bias: Tensor | None = None,
                    edge_mask: Tensor | None = None, edge_key: Tensor | None = None,
                    edge_value: Tensor | None = None, dropout: float = 0.0,
                    training: bool = True, num_nodes: int | None = None,
                    return_attention: bool = False, backend: str | None = None,
                    check_inputs: bool = False) -> AttentionOutput:
    r"""Scaled dot-product attention along the edges of a graph.

    For every edge :math:`j \to i` (``edge_index[:, e] = (j, i)``) and head ``h``:

    .. math::
        s_{ij} = \text{scale} \cdot \langle q_i, k_j + k^E_e \rangle + b_e, \qquad
        a_{ij} = \frac{\exp s_{ij}}{\sum_{j' \to i} \exp s_{ij'}}, \qquad
        \text{out}_i = \sum_{j \to i} a_{ij} (v_j + v^E_e).

    Parameters
    ----------
    query : Tensor
        ``[N_dst, H, C]``, or ``[N_dst, C]`` for one head.
    key : Tensor
        ``[N_src, H, C]`` (``[N_src, C]``: same layout as ``query``).
    value : Tensor
        ``[N_src, H, Cv]`` (``[N_src, Cv]``).
    edge_index : Tensor or PreparedGraph
        ``[2, E]`` LongTensor (row 0 = source ``j``, row 1 = destination ``i``)
        or a :class:`~pyg_attn.ops.PreparedGraph`.
    scale : float, optional
        Score scale; ``None`` = :math:`1/\sqrt{C}`, ``1.0`` = the unscaled
        score of the original key/query/value update.
    edge_bias : Tensor, optional
        ``[E, H]`` or ``[E]`` additive score bias :math:`b_e`.
    edge_mask : Tensor, optional
        ``[E]`` bool; ``True`` = the edge takes part (as in torch SDPA).
    edge_key, edge_value : Tensor, optional
        ``[E, H, C]`` / ``[E, H, Cv]`` (``[E, C]`` / ``[E, Cv]`` for 2-D inputs)
        added to ``k_j`` / ``v_j``.
    dropout : float
        Probability of dropping an attention weight (training only), drawn from
        a counter-based stream seeded by torch's default generator.
    training : bool
        Apply dropout only when ``True``.
    num_nodes : int, optional
        ``N_dst``; must equal ``query.size(0)`` when given.
    return_attention : bool
        Also return ``alpha``.
    backend : str, optional
        ``None`` (automatic), ``"reference"``, ``"cpu"`` or ``"triton"`` (see
        :func:`select_backend`).
    check_inputs : bool
        Also reject NaN/inf values (costs a pass over the inputs).

    Returns
    -------
    out : Tensor
        ``[N_dst, H, Cv]`` (``[N_dst, Cv]`` for 2-D inputs); rows without
        incoming edges are zero.
    alpha : Tensor
        Only with ``return_attention=True``, as ``(out, alpha)``: ``[E, H]``
        (``[E]`` for 2-D inputs) in ``edge_index``'s order, before dropout.

    Raises
    ------
    TypeError, ValueError
        On bad dtypes, shapes, devices or indices.
    """
    check_float("query", query, (2, 3))
    squeeze = query.dim() == 2
    q = query.unsqueeze(1) if squeeze else query
    check_float("key", key, (query.dim(),))
    check_float("value", value, (query.dim(),))
    k = key.unsqueeze(1) if squeeze else key
    v = value.unsqueeze(1) if squeeze else value
    heads, channels = q.size(1), q.size(2)
    if k.shape[1:] != q.shape[1:]:
        raise ValueError(f"'key' must have heads/channels {list(q.shape[1:])} like 'query', "
                         f"got {list(k.shape[1:])}")
    if v.size(0) != k.size(0) or v.size(1) != heads:
        raise ValueError(f"'value' must have shape [{k.size(0)}, {heads}, Cv] to match 'key', "
                         f"got {list(v.shape)}")
    if num_nodes is not None and num_nodes != q.size(0):
        raise ValueError(f"'num_nodes' ({num_nodes}) must equal query.size(0) ({q.size(0)})")
    if check_inputs:
        _check_finite(dict(query=query, key=key, value=value, edge_bias=edge_bias,
                           edge_key=edge_key, edge_value=edge_value))
    num_edges = _num_edges(edge_index)
    unsq = (lambda t: None if t is None else t.unsqueeze(1)) if squeeze else (lambda t: t)
    features = {
        "dst": q, "src": k, "value": v, "att": None,
        "edge_score": _per_edge("edge_bias", edge_bias, num_edges, heads),
        "edge_feat": _per_edge("edge_key", unsq(edge_key), num_edges, heads, (channels,)),
        "edge_value": _per_edge("edge_value", unsq(edge_value), num_edges, heads, (v.size(2),)),
    }
    out, alpha = run_attention("dot", edge_index, q.size(0), features,
                               _check_mask(edge_mask, num_edges),
                      scale=1.0 / math.sqrt(channels) if scale is None else float(scale),
                      negative_slope=0.0, dropout=dropout, training=training,
                      return_attention=return_attention, backend=backend)
    return _finish(out, alpha, squeeze, return_attention)


def gat_attention(alpha_src: Tensor, alpha_dst: Tensor, value: Tensor, edge_index: GraphInput, *,
                  negative_slope: float = 0.2, edge_logit: Tensor | None = None,
                  edge_mask: Tensor | None = None, dropout: float = 0.0,
                  training: bool = True, return_attention: bool = False,
                  backend: str | None = None, check_inputs: bool = False
                  ) -> AttentionOutput:
    r"""GAT's additive attention (Velickovic et al. 2018) along the edges.

    .. math::
        s_{ij} = \mathrm{LeakyReLU}(\alpha^{src}_j + \alpha^{dst}_i + \alpha^{E}_e),
        \qquad \text{out}_i = \sum_{j \to i} \mathrm{softmax}_j(s_{ij})\, v_j

    with per-node scalars (``alpha_src = <a_src, W x_j>`` per head), so the
    scores cost O(E x H).

    Parameters
    ----------
    alpha_src : Tensor
        ``[N_src, H]`` per-source scalars :math:`\alpha^{src}_j`.
    alpha_dst : Tensor
        ``[N_dst, H]`` per-destination scalars :math:`\alpha^{dst}_i`.
    value : Tensor
        ``[N_src, H, C]``.
    edge_index : Tensor or PreparedGraph
        ``[2, E]`` LongTensor or a :class:`~pyg_attn.ops.PreparedGraph`.
    negative_slope : float
        LeakyReLU slope.
    edge_logit : Tensor, optional
        ``[E, H]`` (or ``[E]``) edge term :math:`\alpha^{E}_e` inside the
        LeakyReLU.
    edge_mask, dropout, training, return_attention, backend, check_inputs
        As in :func:`graph_attention`.

    Returns
    -------
    out : Tensor
        ``[N_dst, H, C]``.
    alpha : Tensor
        Only with ``return_attention=True``, as ``(out, alpha)``: ``[E, H]``
        in ``edge_index``'s order, before dropout.

    Raises
    ------
    TypeError, ValueError
        On bad dtypes, shapes, devices or indices.
    """
    check_float("alpha_src", alpha_src, (2,))
    check_float("alpha_dst", alpha_dst, (2,))
    check_float("value", value, (3,))
    heads = value.size(1)
    _check_shape("alpha_src", alpha_src, (value.size(0), heads))
    if alpha_dst.size(1) != heads:
        raise ValueError(f"'alpha_dst' must have shape [N_dst, {heads}], "
                         f"got {list(alpha_dst.shape)}")
    if check_inputs:
        _check_finite(dict(alpha_src=alpha_src, alpha_dst=alpha_dst, value=value,
                           edge_logit=edge_logit))
    num_edges = _num_edges(edge_index)
    features = {"dst": alpha_dst.unsqueeze(-1), "src": alpha_src.unsqueeze(-1), "value": value,
                "att": None, "edge_score": _per_edge("edge_logit", edge_logit, num_edges, heads),
                "edge_feat": None, "edge_value": None}
    out, alpha = run_attention("gat", edge_index, alpha_dst.size(0), features,
                      _check_mask(edge_mask, num_edges), scale=1.0,
                      negative_slope=negative_slope, dropout=dropout, training=training,
                      return_attention=return_attention, backend=backend)
    return _finish(out, alpha, False, return_attention)


def gatv2_attention(x_src: Tensor, x_dst: Tensor, att: Tensor, edge_index: GraphInput, *,
                    negative_slope: float = 0.2, edge_feat: Tensor | None = None,
                    edge_mask: Tensor | None = None, dropout: float = 0.0,
                    training: bool = True, return_attention: bool = False,
                    backend: str | None = None, check_inputs: bool = False
                    ) -> AttentionOutput:
    r"""GATv2's attention (Brody et al. 2022) along the edges.

    .. math::
        s_{ij} = \langle a, \mathrm{LeakyReLU}(x^{src}_j + x^{dst}_i + x^{E}_e) \rangle,
        \qquad \text{out}_i = \sum_{j \to i} \mathrm{softmax}_j(s_{ij})\, x^{src}_j

    The per-edge sum is recomputed inside the fused kernel (forward and backward)
    rather than stored as ``[E, H, C]``.

    Parameters
    ----------
    x_src : Tensor
        ``[N_src, H, C]`` projected source features (also the values).
    x_dst : Tensor
        ``[N_dst, H, C]`` projected destination features.
    att : Tensor
        ``[H, C]`` attention vector :math:`a` (a leading ``1`` as in PyG's
        ``[1, H, C]`` parameter is accepted).
    edge_index : Tensor or PreparedGraph
        ``[2, E]`` LongTensor or a :class:`~pyg_attn.ops.PreparedGraph`.
    negative_slope : float
        LeakyReLU slope.
    edge_feat : Tensor, optional
        ``[E, H, C]`` projected edge features :math:`x^{E}_e`.
    edge_mask, dropout, training, return_attention, backend, check_inputs
        As in :func:`graph_attention`.

    Returns
    -------
    out : Tensor
        ``[N_dst, H, C]``.
    alpha : Tensor
        Only with ``return_attention=True``, as ``(out, alpha)``: ``[E, H]``
        in ``edge_index``'s order, before dropout.

    Raises
    ------
    TypeError, ValueError
        On bad dtypes, shapes, devices or indices.
    """
    check_float("x_src", x_src, (3,))
    check_float("x_dst", x_dst, (3,))
    check_float("att", att, (2, 3))
    heads, channels = x_src.size(1), x_src.size(2)
    if x_dst.shape[1:] != x_src.shape[1:]:
        raise ValueError(f"'x_dst' must have heads/channels {list(x_src.shape[1:])}, got "
                         f"{list(x_dst.shape[1:])}")
    att = att.reshape(att.shape[-2:]) if att.dim() == 3 and att.size(0) == 1 else att
    _check_shape("att", att, (heads, channels))
    if check_inputs:
        _check_finite(dict(x_src=x_src, x_dst=x_dst, att=att, edge_feat=edge_feat))
    num_edges = _num_edges(edge_index)
    features = {"dst": x_dst, "src": x_src, "value": x_src, "att": att, "edge_score": None,
                "edge_feat": _per_edge("edge_feat", edge_feat, num_edges, heads, (channels,)),
                "edge_value": None}
    out, alpha = run_attention("gatv2", edge_index, x_dst.size(0), features,
                      _check_mask(edge_mask, num_edges), scale=1.0,
                      negative_slope=negative_slope, dropout=dropout, training=training,
                      return_attention=return_attention, backend=backend)
    return _finish(out, alpha, False, return_attention)
