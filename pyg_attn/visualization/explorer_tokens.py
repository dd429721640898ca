"""Transformer attention on the explorer page: tokens in reading order, dense layers.

One sequence's attention (:func:`pyg_attn.convert.token_stack`: a list of ``[H, T, T]``
or ``[B, H, T, T]`` tensors, padding removed) is embedded compactly: each weight as
the integer ``round(w * SCALE)`` (the 4 decimals the page shows), one byte when below
255 and three otherwise, deflated (zlib) and base64-encoded; the page inflates it with
the browser's ``DecompressionStream``.  Rollout is embedded for every token (the
``[T', T']`` matrix, coded the same way), flow rows for the ``flow_targets`` tokens
nearest the chosen one (as JSON, to 6 decimals).
"""
from __future__ import annotations

import base64
import zlib
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..analysis import attention_flow, attention_rollout
from ..convert.tokens import token_labels, token_stack
from .explorer_graph import check_int, rows

__all__ = ["SCALE", "TOPK_FROM", "encode_weights", "token_content"]

#: Weights are embedded as ``round(w * SCALE)``: to 4 decimals, as the page shows them.
SCALE = 10_000
#: From this many tokens on, the page opens with each query's 3 strongest keys drawn
#: (the filter's top-k) rather than all ``T * T`` edges.
TOPK_FROM = 24


def encode_weights(weights: Tensor) -> str:
    """``[H, T, T]`` weights as the page reads them: ``q = round(w * SCALE)`` in
    head-major order, ``q < 255`` as one byte and larger ones as ``255, q >> 8, q & 255``,
    deflated and base64-encoded.

    Examples
    --------
    >>> text = encode_weights(torch.tensor([[[0.25, 0.75], [1.0, 0.0]]]))
    >>> list(zlib.decompress(base64.b64decode(text)))
    [255, 9, 196, 255, 29, 76, 255, 39, 16, 0]
    """
    q = np.rint(weights.detach().cpu().double().numpy().reshape(-1) * SCALE).astype(np.int64)
    wide = q >= 255
    position = np.arange(q.size) + 2 * (np.cumsum(wide) - wide)  # 2 extra bytes per wide
    out = np.empty(q.size + 2 * int(wide.sum()), dtype=np.uint8)
    out[position] = np.where(wide, 255, q)
    out[position[wide] + 1] = q[wide] >> 8
    out[position[wide] + 2] = q[wide] & 255
    return base64.b64encode(zlib.compress(out.tobytes(), 9)).decode("ascii")


def _centre(node: Any, positions: Tensor) -> int:
    """The kept index of input position ``node`` (default: the first kept token)."""
    if node is None:
        return 0
    node = check_int("node", node, 0)
    found = (positions == node).nonzero().view(-1)
    if found.numel() == 0:
        raise ValueError(f"node must be the position of a kept token (0 <= node, not "
                         f"padding), got {node}; kept: {positions.tolist()[:8]}...")
    return int(found[0])


def token_content(attentions: Any, labels: Any, batch: Optional[int], attention_mask: Any,
                  node: Any, flow_targets: int) -> Tuple[Dict[str, Any], str]:
    """The page data of transformer attention over tokens, and the chosen token's name."""
    stack = token_stack(attentions, batch, attention_mask)
    tokens = token_labels(labels, stack.length, stack.positions)
    size = len(tokens)
    centre = _centre(node, stack.positions)
    by_distance = sorted(range(size), key=lambda k: (abs(k - centre), k))
    flow_nodes = torch.tensor(by_distance[:flow_targets], dtype=torch.long)
    flow = attention_flow(stack.weights, targets=flow_nodes)
    padding = stack.length - size
    return {
        "kind": "tokens",
        "nodes": stack.positions.tolist(),
        "tokens": tokens,
        "pos": None,
        "centre": centre,
        "labels": None,
        "predictions": None,
        "num_classes": 0,
        "scale": SCALE,
        "layers": [{"name": name, "heads": int(layer.size(0)), "weights": encode_weights(layer)}
                   for name, layer in zip(stack.names, stack.weights)],
        "rollout": encode_weights(attention_rollout(stack.weights).unsqueeze(0)),
        "flow": rows(flow, flow_nodes, torch.arange(size)),
        "flow_targets": int(flow_nodes.numel()),
        "filter": ({"mode": "topk", "value": 3} if size >= TOPK_FROM
                   else {"mode": "threshold", "value": 0}),
        "message": (f"{padding} padding positions (attention_mask = 0) are left out."
                    if padding else None),
    }, f"{tokens[centre]} ({int(stack.positions[centre])})"
