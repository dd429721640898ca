"""When a layer must run PyG's message path instead of the fused kernel."""
from __future__ import annotations

from torch_geometric.nn.conv import MessagePassing

#: MessagePassing hook dictionaries whose hooks expect ``propagate`` to run.
HOOK_DICTS = (
    "_propagate_forward_pre_hooks", "_propagate_forward_hooks", "_message_forward_pre_hooks",
    "_message_forward_hooks", "_aggregate_forward_pre_hooks", "_aggregate_forward_hooks",
    "_edge_update_forward_pre_hooks", "_edge_update_forward_hooks",
)


def uses_message_path(module: MessagePassing) -> bool:
    """``True`` when PyG's machinery must see the messages.

    That is when ``explain`` is set (explainers mask the messages), a
    propagate/message/aggregate/edge-update hook is registered (e.g. by
    ``AttentionExplainer``), messages flow ``"target_to_source"``, or the
    aggregation is not a sum: the fused kernels only compute the default
    direction's weighted sum.
    """
    if module.explain or module.flow != "source_to_target":
        return True
    if module.aggr not in ("add", "sum"):
        return True
    return any(len(getattr(module, name, ())) > 0 for name in HOOK_DICTS)
