r"""The models table, and two-layer attention networks for node classification (the GAT recipe).

:data:`MODELS` names every model of the package's training, for node
classification (:class:`NodeClassifier`, below) and for graph classification
(:class:`~pyg_attn.training.graph_classifier.GraphClassifier`, a model with a
pooling layer).

Every model follows the transductive architecture of Velickovic et al. 2018,
"Graph Attention Networks" (section 3.3, Cora and CiteSeer):

.. math::
    h = \operatorname{ELU}\bigl(\operatorname{conv}_1(\operatorname{drop}(x))\bigr),
    \qquad
    \hat y = \operatorname{conv}_2(\operatorname{drop}(h))

with ``conv_1`` of ``heads`` heads of ``hidden`` features each, concatenated
(8 x 8 in the paper), ``conv_2`` of ``out_heads`` heads averaged into one score
per class (1 for Cora and CiteSeer), dropout ``p = 0.6`` on both layers' inputs
and on the attention weights.  Only the attention layer changes between the
model names of :data:`NODE_MODELS`; the PyG twins (``pyg-gat`` ...) are there to
compare against PyG's own ``examples/gat.py``.

Where the feature dropout falls is the ``dropout_scheme`` (the names of
:data:`~pyg_attn.nn.conv.head_dropout.DROPOUT_SCHEMES`):

- ``"per_head"``: as in the paper's reference code, each head draws its own mask
  on the layer input and its projected features are dropped too
  (:mod:`~pyg_attn.nn.conv.head_dropout`).  It is the default of ``gat`` and of
  its twin ``pyg-gat`` (:data:`PER_HEAD_MODELS`), so default runs of the two
  compare like for like: ``gat`` runs it inside :class:`~pyg_attn.nn.GATConv`,
  ``pyg-gat`` gets it by :func:`per_head_dropout_twin`;
- ``"shared"``: one mask on each layer's input, shared by the heads, as in
  PyG's ``examples/gat.py``; the default, and the only scheme, of the other
  models.

Both are the same network in evaluation mode.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch_geometric.nn as pyg_nn
from torch import Tensor
from torch_geometric.nn.inits import reset

from ..nn import AttentionPooling, GATConv, GATv2Conv, KQVConv, TransformerConv
from ..nn.conv.head_dropout import DROPOUT_SCHEMES, HeadwiseDropoutLinear
from .checks import check_layers, one_of, positive_int
from .options import setting

__all__ = ["DROPOUT_SCHEMES", "GRAPH_MODELS", "MODELS", "ModelConfig", "ModelSpec",
           "NODE_MODELS", "NodeClassifier", "PER_HEAD_MODELS", "build_model",
           "default_dropout_scheme", "per_head_dropout_twin"]


@dataclass(frozen=True)
class ModelSpec:
    """The layers of a model name.

    Attributes
    ----------
    conv : callable
        Attention layer class, constructed as ``conv(in, out, heads=, concat=,
        dropout=, ...)``.
    pool : callable, optional
        Pooling class (``pool(gate_nn, nn)``) of a graph-classification model;
        :obj:`None` for node classification.
    """

    conv: Callable[..., torch.nn.Module]
    pool: Callable[..., torch.nn.Module] | None = None


#: Model name -> its layers.  ``pyg-*`` are built from PyG's own layers, for baselines;
#: ``*-pool`` classify graphs (attention pooling), the others nodes.
MODELS: dict[str, ModelSpec] = {
    "gat": ModelSpec(GATConv),
    "gatv2": ModelSpec(GATv2Conv),
    "transformer": ModelSpec(TransformerConv),
    "kqv": ModelSpec(KQVConv),
    "pyg-gat": ModelSpec(pyg_nn.GATConv),
    "pyg-gatv2": ModelSpec(pyg_nn.GATv2Conv),
    "pyg-transformer": ModelSpec(pyg_nn.TransformerConv),
    "gat-pool": ModelSpec(GATConv, AttentionPooling),
    "pyg-gat-pool": ModelSpec(pyg_nn.GATConv, pyg_nn.aggr.AttentionalAggregation),
}

#: The node-classification models (:class:`NodeClassifier`).
NODE_MODELS = tuple(name for name, spec in MODELS.items() if spec.pool is None)
#: The graph-classification models (:class:`~pyg_attn.training.graph_classifier.GraphClassifier`).
GRAPH_MODELS = tuple(name for name, spec in MODELS.items() if spec.pool is not None)

#: The models that can take the ``"per_head"`` scheme, their default.
PER_HEAD_MODELS = ("gat", "pyg-gat")


def default_dropout_scheme(model: str) -> str:
    """``"per_head"`` for the GAT paper's model and its PyG twin
    (:data:`PER_HEAD_MODELS`), ``"shared"`` for the others."""
    return "per_head" if model in PER_HEAD_MODELS else "shared"


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a :class:`NodeClassifier` (defaults: the GAT paper, Cora).

    Attributes
    ----------
    model : str
        One of :data:`NODE_MODELS`.
    hidden : int
        Features per head of the first layer.
    heads : int
        Heads of the first layer (concatenated).
    out_heads : int
        Heads of the output layer (averaged).
    dropout : float
        Dropout on each layer's input features.
    attn_dropout : float
        Dropout on the attention weights.
    dropout_scheme : str, optional
        ``"per_head"`` or ``"shared"`` (see the module doc); ``None`` picks
        :func:`default_dropout_scheme` of ``model``.
    """

    model: str = setting("gat", help="attention layer", choices=NODE_MODELS)
    hidden: int = setting(8, help="features per head of the first layer")
    heads: int = setting(8, help="heads of the first layer (concatenated)")
    out_heads: int = setting(1, help="heads of the output layer (averaged)")
    dropout: float = setting(0.6, help="dropout on each layer's input features")
    attn_dropout: float = setting(0.6, help="dropout on the attention weights")
    dropout_scheme: str | None = setting(
        None, choices=DROPOUT_SCHEMES, shown_default="per_head for gat and pyg-gat, shared "
        "for the others", help="where the feature dropout falls: per_head, each head draws "
        "its own input mask and its projected features are dropped too (the GAT paper's "
        "code; gat and pyg-gat only); shared, one mask per layer input (PyG's "
        "examples/gat.py)")

    def __post_init__(self) -> None:
        check_layers(self, NODE_MODELS, ("hidden", "heads", "out_heads"))
        if self.dropout_scheme is None:
            object.__setattr__(self, "dropout_scheme", default_dropout_scheme(self.model))
        one_of("dropout_scheme", self.dropout_scheme, DROPOUT_SCHEMES)
        if self.dropout_scheme == "per_head" and self.model not in PER_HEAD_MODELS:
            raise ValueError("dropout_scheme='per_head' is the GAT paper's recipe and needs a "
                             f"model in {list(PER_HEAD_MODELS)}, got model={self.model!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) of the fields."""
        return asdict(self)


class NodeClassifier(torch.nn.Module):
    r"""Two attention layers with ELU between them, as in GAT's transductive setup.

    Parameters
    ----------
    in_channels : int
        Input features per node :math:`F`.
    num_classes : int
        Output scores per node :math:`C`.
    config : ModelConfig, optional
        Layer type and sizes; the GAT paper's Cora settings when omitted.

    Raises
    ------
    ValueError
        If ``in_channels`` or ``num_classes`` is not a positive int.
    TypeError
        If ``config`` is not a :class:`ModelConfig`.

    Examples
    --------
    >>> import torch
    >>> from pyg_attn.training.models import ModelConfig, NodeClassifier
    >>> _ = torch.manual_seed(0)
    >>> model = NodeClassifier(16, 3, ModelConfig("gat", hidden=4, heads=2)).eval()
    >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    >>> model(torch.randn(3, 16), edge_index).shape
    torch.Size([3, 3])
    """

    #: Attention layers: a node's scores depend on its ``num_layers``-hop
    #: in-neighbourhood only.
    num_layers = 2

    def __init__(self, in_channels: int, num_classes: int,
                 config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("num_classes", num_classes)
        if not isinstance(config, ModelConfig):
            raise TypeError(f"'config' must be a ModelConfig, got {type(config).__name__}")
        self.config = config
        conv = MODELS[config.model].conv
        per_head = config.dropout_scheme == "per_head"
        extra = dict(input_dropout=config.dropout, dropout_scheme="per_head") \
            if per_head and conv is GATConv else {}
        self.conv1 = conv(in_channels, config.hidden, heads=config.heads, concat=True,
                          dropout=config.attn_dropout, **extra)
        self.conv2 = conv(config.hidden * config.heads, num_classes, heads=config.out_heads,
                          concat=False, dropout=config.attn_dropout, **extra)
        if per_head and conv is not GATConv:
            per_head_dropout_twin(self.conv1, config.dropout)
            per_head_dropout_twin(self.conv2, config.dropout)

    def reset_parameters(self) -> None:
        """Re-initialises both layers."""
        reset(self.conv1)
        reset(self.conv2)

    def forward(self, x: Tensor, edge_index: Any) -> Tensor:
        """Class scores of every node.

        Parameters
        ----------
        x : Tensor
            Node features :math:`(N, F)`.
        edge_index : Tensor or SparseTensor
            Edges :math:`(2, E)` (``edge_index[0]`` = source, ``[1]`` =
            destination) or a sparse adjacency.

        Returns
        -------
        Tensor
            Class scores (logits) :math:`(N, C)`.
        """
        if self.config.dropout_scheme == "per_head":  # the layers drop their inputs
            return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)
        x = F.dropout(x, p=self.config.dropout, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.config.dropout, training=self.training)
        return self.conv2(x, edge_index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.conv1}, {self.conv2})"


def per_head_dropout_twin(conv: pyg_nn.GATConv, p: float) -> None:
    """Gives PyG's ``GATConv`` the paper's dropout (``dropout_scheme="per_head"``), in place.

    Its ``lin`` becomes a :class:`~pyg_attn.nn.conv.head_dropout.HeadwiseDropoutLinear`
    (each head its own input mask; same weight and ``state_dict`` key), and a
    propagate pre-hook drops the projected source features that PyG aggregates,
    after its attention logits were computed from them: the same scheme as
    ``pyg_attn.nn.GATConv(..., input_dropout=p, dropout_scheme="per_head")``,
    through PyG's own forward.
    """
    if conv.lin is None or conv.res is not None:
        raise ValueError("'conv' must have one shared projection and no residual")
    conv.lin = HeadwiseDropoutLinear(conv.lin, conv.heads, p)

    def drop_aggregated(module: torch.nn.Module, inputs: tuple[Any, Any, dict[str, Any]]
                        ) -> tuple[Any, Any, dict[str, Any]] | None:
        if not module.training:
            return None
        edge_index, size, kwargs = inputs
        x_src, x_dst = kwargs["x"]
        return edge_index, size, {**kwargs, "x": (F.dropout(x_src, p), x_dst)}

    conv.register_propagate_forward_pre_hook(drop_aggregated)


def build_model(in_channels: int, num_classes: int, model: str = "gat",
                **hyper: Any) -> NodeClassifier:
    """A :class:`NodeClassifier` from a model name and :class:`ModelConfig` fields.

    Examples
    --------
    >>> from pyg_attn.training.models import build_model
    >>> net = build_model(1433, 7, "gatv2", heads=4)
    >>> type(net.conv1).__name__, net.conv1.heads
    ('GATv2Conv', 4)
    """
    return NodeClassifier(in_channels, num_classes, ModelConfig(model=model, **hyper))
