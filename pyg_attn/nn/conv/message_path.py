"""When a layer must run PyG's message path instead of the fused kernel."""
from __future__ import annotations

from torch_geometric.nn.conv import MessagePassing

#: The hook dictionaries PyG's :class:`~torch_geometric.nn.conv.MessagePassing`
#: adds to a module: the ``OrderedDict`` attributes its ``__init__`` creates, one per
#: ``register_{propagate,message,aggregate,message_and_aggregate,edge_update}_forward
#: {_pre,}_hook`` method (``torch_geometric/nn/conv/message_passing.py``).  Their
#: hooks expect ``propagate`` and its steps to run.  The one list of them: the
#: layers take PyG's message path when one is set (:func:`uses_message_path`),
#: and :func:`~pyg_attn.nn.replace_layers` refuses to drop their hooks.
MESSAGE_PASSING_HOOK_DICTS: tuple[str, ...] = (
    "_propagate_forward_pre_hooks", "_propagate_forward_hooks",
    "_message_forward_pre_hooks", "_message_forward_hooks",
    "_aggregate_forward_pre_hooks", "_aggregate_forward_hooks",
    "_message_and_aggregate_forward_pre_hooks", "_message_and_aggregate_forward_hooks",
    "_edge_update_forward_pre_hooks", "_edge_update_forward_hooks",
)


def uses_message_path(module: MessagePassing) -> bool:
    """``True`` when PyG's machinery must see the messages.

    That is when ``explain`` is set (explainers mask the messages), a hook of
    :data:`MESSAGE_PASSING_HOOK_DICTS` is registered (e.g. by
    ``AttentionExplainer``), messages flow ``"target_to_source"``, or the
    aggregation is not a sum: the fused kernels only compute the default
    direction's weighted sum.
    """
    if module.explain or module.flow != "source_to_target":
        return True
    if module.aggr not in ("add", "sum"):
        return True
    return any(len(getattr(module, name, ())) > 0 for name in MESSAGE_PASSING_HOOK_DICTS)
