"""Swapping PyG's attention layers inside an existing model: :func:`replace_layers`."""
from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch_geometric.nn.conv as pyg_conv
from torch.nn import Module
from torch.nn.parameter import UninitializedParameter

from . import conv as ours
from .conv.message_path import MESSAGE_PASSING_HOOK_DICTS

__all__ = ["replace_layers"]

#: Names of the layers :func:`replace_layers` can swap (PyG's class -> ours).
REPLACEABLE: tuple[str, ...] = ("GATConv", "GATv2Conv", "TransformerConv")

# Hook dictionaries whose hooks would be lost by a swap (refused, see the doc):
# torch.nn.Module's forward/backward ones and PyG's MessagePassing ones.
_HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks",
               *MESSAGE_PASSING_HOOK_DICTS)


def _has_bias(layer: Module) -> bool:
    if isinstance(layer, pyg_conv.TransformerConv):
        return layer.lin_key.bias is not None  # no layer-level bias; `bias` goes to the Linears
    return getattr(layer, "bias", None) is not None


def _constructor_args(layer: Module, target: type[Module]) -> dict[str, object]:
    """The keyword arguments that rebuild ``layer`` as ``target`` (read from its attributes)."""
    name = type(layer).__name__
    accepted = inspect.signature(target.__init__).parameters
    kwargs: dict[str, object] = {}
    for pname, param in inspect.signature(type(layer).__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if pname == "bias":
            value: object = _has_bias(layer)
        elif hasattr(layer, pname):
            value = getattr(layer, pname)
        else:
            raise ValueError(f"replace_layers: cannot recover the constructor argument "
                             f"'{pname}' of {name} from its attributes")
        if pname not in accepted:
            raise ValueError(f"replace_layers: pyg_attn's {name} has no argument '{pname}'")
        kwargs[pname] = value

    # MessagePassing arguments (node_dim is 0 on both sides).
    aggr = layer.aggr
    if not (isinstance(aggr, str) or (isinstance(aggr, list)
                                      and all(isinstance(a, str) for a in aggr))):
        raise ValueError(f"replace_layers: {name} with aggr={aggr!r} is not supported")
    kwargs["aggr"] = aggr
    kwargs["flow"] = layer.flow
    kwargs["decomposed_layers"] = layer.decomposed_layers
    return kwargs


def _layout(module: Module) -> list:
    """``[(key, shape or None if lazy)]`` of a module's state."""
    return [(k, None if isinstance(v, UninitializedParameter) else tuple(v.shape))
            for k, v in module.state_dict(keep_vars=True).items()]


def _swap(layer: Module, target: type[Module]) -> Module:
    """``layer`` rebuilt as ``target``, holding the very same parameter objects."""
    name = type(layer).__name__
    for hooks in _HOOK_DICTS:
        if len(getattr(layer, hooks, ())) > 0:
            raise ValueError(f"replace_layers: the {name} layer has hooks registered "
                             f"({hooks}); replace the layers before registering hooks")
    if getattr(layer, "_edge_mask", None) is not None:
        raise ValueError(f"replace_layers: the {name} layer holds an explainer edge mask; "
                         "clear it (torch_geometric.explain.algorithm.utils.clear_masks) "
                         "first")

    new = target(**_constructor_args(layer, target))
    new.aggr_module = layer.aggr_module  # keeps aggr_kwargs and learnable aggregations
    # Strict: same keys and shapes.  Lazy (uninitialised) weights stay lazy, and
    # weights PyG initialised lazily are materialised on our side (PyG's Linear
    # hooks handle both).
    new.load_state_dict(layer.state_dict())

    # Hand over the parameter objects themselves, so that optimizers, gradients,
    # `requires_grad`, device and dtype all carry over unchanged.
    for pname, param in layer.named_parameters():
        owner, _, leaf = pname.rpartition(".")
        setattr(new.get_submodule(owner), leaf, param)
    for bname, buf in layer.named_buffers():
        owner, _, leaf = bname.rpartition(".")
        setattr(new.get_submodule(owner), leaf, buf)
    if _layout(new) != _layout(layer):
        raise RuntimeError(f"replace_layers: the state of {name} did not carry over")

    for sub_name, sub in layer.named_modules():
        try:
            new.get_submodule(sub_name).training = sub.training
        except AttributeError:
            pass
    new._explain = layer._explain
    new._apply_sigmoid = layer._apply_sigmoid
    return new


def replace_layers(model: Module, *,
                   layers: str | Iterable[str] = REPLACEABLE) -> Module:
    """Swaps PyG's attention layers inside ``model`` for those of :mod:`pyg_attn.nn`.

    Every :class:`torch_geometric.nn.conv.GATConv`, ``GATv2Conv`` and
    ``TransformerConv`` found anywhere in ``model`` (plain attributes,
    ``ModuleList`` / ``ModuleDict`` entries, :class:`torch_geometric.nn.models.GAT`,
    models transformed by :func:`torch_geometric.nn.to_hetero`) is replaced in
    place by the layer of the same name from :mod:`pyg_attn.nn`, built with the
    same constructor arguments (read from the layer's attributes) and holding
    the same parameter objects.  With dropout off, the model computes the same
    outputs (to float32 rounding), faster and with less memory.

    Parameters
    ----------
    model : torch.nn.Module
        The model; modified in place.
    layers : str or iterable of str, optional
        Which layer types to swap, a subset of
        ``("GATConv", "GATv2Conv", "TransformerConv")`` (default: all three).

    Returns
    -------
    torch.nn.Module
        ``model`` itself, or the new layer when ``model`` is itself one of the
        layers to swap (a module cannot replace itself in place).

    Raises
    ------
    ValueError
        For an unknown name in ``layers``; for a layer that cannot be swapped
        faithfully: one with hooks registered on it (they would be lost: swap
        first, register hooks after), an explainer edge mask set, a GAT layer
        with a non-sum ``aggr``, or a constructor argument that cannot be
        recovered.  Nothing is swapped then.
    TypeError
        If ``model`` is not a :class:`torch.nn.Module`.

    Notes
    -----
    * Only layers of exactly PyG's classes are swapped; subclasses (which may
      override ``message`` and friends) are left alone.
    * Parameters are *moved*, not copied: the new layers hold the old layers'
      ``Parameter`` objects, so an optimizer built before the swap keeps
      training them, and device, dtype, ``requires_grad`` and gradients carry
      over.  ``state_dict`` keys are unchanged.  Lazy layers
      (``in_channels=-1``) work initialised or not (uninitialised ones stay
      lazy).  The training mode of each layer (and of its sub-modules) is kept.
    * A layer registered under several names is swapped once and stays shared.
    * Differences of the new layers (see their docs): attention weights
      returned before dropout, their own dropout stream (different masks in
      training mode), ``TransformerConv(return_attention_weights=False)``
      returns just the output.

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.nn.models import GAT
    >>> from pyg_attn.nn import GATConv, replace_layers
    >>> model = GAT(16, 32, num_layers=2, out_channels=4, heads=4).eval()
    >>> x, edge_index = torch.randn(10, 16), torch.randint(0, 10, (2, 40))
    >>> before = model(x, edge_index)
    >>> model = replace_layers(model)
    >>> all(isinstance(conv, GATConv) for conv in model.convs)
    True
    >>> torch.allclose(model(x, edge_index), before, atol=1e-5)
    True
    """
    if not isinstance(model, Module):
        raise TypeError(f"'model' must be a torch.nn.Module, got {type(model).__name__}")
    names = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [n for n in names if n not in REPLACEABLE]
    if unknown:
        raise ValueError(f"'layers' must name layers among {REPLACEABLE}, got {unknown}")
    mapping = {getattr(pyg_conv, n): getattr(ours, n) for n in names}

    if type(model) in mapping:
        return _swap(model, mapping[type(model)])

    # Build every replacement first, so that an error leaves the model untouched.
    swapped: dict[int, Module] = {}
    sites = []
    for parent in model.modules():
        for child_name, child in parent._modules.items():
            if child is not None and type(child) in mapping:
                if id(child) not in swapped:
                    swapped[id(child)] = _swap(child, mapping[type(child)])
                sites.append((parent, child_name, swapped[id(child)]))
    for parent, child_name, new in sites:
        parent._modules[child_name] = new
    return model
