"""Key/query/value attention on Cora: train, evaluate, and look at the attention.

Loads the Cora citation graph shipped with pyg_attn (no download), trains a small
two-layer model built from :class:`pyg_attn.nn.KQVConv`, prints its test accuracy,
prints which neighbours a few nodes attend to (last layer), and saves a picture of
one node's attention neighbourhood.  As in GAT, every node gets a self-loop, so it
also attends to itself; that weight is reported apart from its neighbours'.

    python examples/cora_attention.py                 # 100 epochs, a few seconds
    python examples/cora_attention.py --epochs 5 --out out/

Direction (docs/guide/conventions.md): ``edge_index[0]`` is the source ``j``,
``edge_index[1]`` the destination ``i``; node ``i`` attends over its incoming edges
``j -> i`` with weights ``a_ij`` that sum to 1 over its neighbours.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402
from torch_geometric.utils import add_self_loops  # noqa: E402

from pyg_attn.datasets import load_dataset  # noqa: E402
from pyg_attn.nn import KQVConv  # noqa: E402


class KQVNet(torch.nn.Module):
    """Linear(F -> 64) + KQVConv(64, 16, heads=4) + ELU + KQVConv(64, classes)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 16, heads: int = 4,
                 dropout: float = 0.6, attn_dropout: float = 0.6) -> None:
        super().__init__()
        self.dropout = dropout
        self.lin = torch.nn.Linear(in_channels, hidden * heads)
        self.conv1 = KQVConv(hidden * heads, hidden, heads=heads, dropout=attn_dropout)
        self.conv2 = KQVConv(hidden * heads, num_classes, heads=1, concat=False,
                             residual=False, dropout=attn_dropout)

    def forward(self, x: Tensor, edge_index: Tensor, return_attention: bool = False):
        x = F.dropout(x, self.dropout, self.training)
        x = F.elu(self.lin(x))
        x = F.dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        if return_attention:
            return self.conv2(x, edge_index, return_attention_weights=True)
        return self.conv2(x, edge_index)


def accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    return float((logits[mask].argmax(dim=-1) == y[mask]).float().mean())


def train(model: KQVNet, data, epochs: int, lr: float = 0.01, weight_decay: float = 5e-4):
    """Full-batch training; returns the weights of the best validation epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_val, best_state, best_epoch = -1.0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, epochs + 1):
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()

        model.eval()
        with torch.no_grad():
            logits = model(data.x, data.edge_index)
        val = accuracy(logits, data.y, data.val_mask)
        if val > best_val:
            best_val, best_state, best_epoch = val, copy.deepcopy(model.state_dict()), epoch
        if epoch == 1 or epoch % 20 == 0 or epoch == epochs:
            print(f"epoch {epoch:3d}  loss {loss.item():.4f}  "
                  f"train {accuracy(logits, data.y, data.train_mask):.3f}  val {val:.3f}")
    model.load_state_dict(best_state)
    return best_epoch, best_val


def neighbourhood(edge_index: Tensor, alpha: Tensor, node: int):
    """Sources ``j != node`` of the edges ``j -> node``, their weights ``a_ij``
    (head 0, largest first) and the weight of the self-loop (0 if none)."""
    incoming = edge_index[1] == node
    is_self = incoming & (edge_index[0] == node)
    others = incoming & ~is_self
    weights = alpha[others, 0]
    order = torch.argsort(weights, descending=True)
    return edge_index[0, others][order], weights[order], float(alpha[is_self, 0].sum())


def pick_nodes(edge_index: Tensor, alpha: Tensor, candidates: Tensor, num_nodes: int,
               count: int, low: int = 3, high: int = 6) -> list[int]:
    """``count`` nodes among ``candidates`` with ``low..high`` neighbours (self-loop
    not counted), those whose attention is least uniform first (largest top weight
    relative to the uniform ``1 / in-degree``)."""
    src, dst = edge_index
    others = src != dst
    degree = torch.bincount(dst[others], minlength=num_nodes)
    in_degree = torch.bincount(dst, minlength=num_nodes)
    top = torch.zeros(num_nodes).scatter_reduce(
        0, dst[others], alpha[others, 0], reduce="amax", include_self=False)
    peak = top * in_degree
    chosen = [int(n) for n in candidates if low <= int(degree[n]) <= high]
    chosen.sort(key=lambda n: (-float(peak[n]), n))
    return chosen[:count]


def draw_neighbourhood(node: int, sources: Tensor, weights: Tensor, self_weight: float,
                       labels: Tensor, prediction: Tensor, path: Path) -> None:
    """The node in the centre, its neighbours on a circle, arrows j -> i whose width
    and colour give the attention ``a_ij``."""
    cmap, norm = plt.get_cmap("viridis"), matplotlib.colors.Normalize(0.0, 1.0)
    class_colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    angles = torch.linspace(0, 2 * torch.pi, len(sources) + 1)[:-1] + torch.pi / 2
    for angle, src, weight in zip(angles, sources.tolist(), weights.tolist()):
        x, y = 1.6 * float(torch.cos(angle)), 1.6 * float(torch.sin(angle))
        ax.annotate("", xy=(0.0, 0.0), xytext=(x, y),
                    arrowprops=dict(arrowstyle="-|>", color=cmap(norm(weight)),
                                    lw=1.0 + 10.0 * weight, shrinkA=22, shrinkB=26,
                                    mutation_scale=14 + 10 * weight))
        ax.scatter([x], [y], s=900, color=class_colours(int(labels[src]) % 10),
                   edgecolors="black", zorder=3)
        ax.text(x, y, str(src), ha="center", va="center", fontsize=8, zorder=4)
        ax.text(0.55 * x, 0.55 * y, f"{weight:.2f}", ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8),
                zorder=5)
    ax.scatter([0.0], [0.0], s=1500, color=class_colours(int(labels[node]) % 10),
               edgecolors="black", linewidths=2.5, zorder=3)
    ax.text(0.0, 0.0, str(node), ha="center", va="center", fontsize=10, fontweight="bold",
            zorder=4)
    ax.text(0.0, -0.42, f"self {self_weight:.2f}", ha="center", va="center", fontsize=9,
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8), zorder=5)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                 label="attention $a_{ij}$ (last layer)", shrink=0.8)
    ax.set_title(f"Cora node {node}: attention over its {len(sources)} neighbours\n"
                 f"class {int(labels[node])}, predicted {int(prediction[node])}; "
                 "fill = class, arrow = message j -> i")
    ax.set_xlim(-2.2, 2.2)
    ax.set_ylim(-2.2, 2.2)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="data root with planetoid/Cora/raw (default: PYG_ATTN_DATA, "
                             "else the copy shipped with pyg_attn)")
    parser.add_argument("--quick", action="store_true", help="5 epochs, for smoke tests")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    epochs = 5 if args.quick else args.epochs
    out_dir = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="pyg_attn_cora_"))
    out_dir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    dataset = load_dataset("Cora", root=args.data_root)
    data = dataset[0]
    print(f"{dataset.name}: {data.num_nodes} nodes, {data.num_edges} edges, "
          f"{dataset.num_features} features, {dataset.num_classes} classes")
    # One self-loop per node, as GATConv adds: a node also attends to itself.
    data.edge_index, _ = add_self_loops(data.edge_index, num_nodes=data.num_nodes)

    model = KQVNet(dataset.num_features, dataset.num_classes)
    best_epoch, best_val = train(model, data, epochs)

    model.eval()
    with torch.no_grad():
        logits, (edge_index, alpha) = model(data.x, data.edge_index, return_attention=True)
    prediction = logits.argmax(dim=-1)
    test = accuracy(logits, data.y, data.test_mask)
    print(f"test accuracy: {test:.4f}  (best validation {best_val:.4f} at epoch {best_epoch})")

    nodes = pick_nodes(edge_index, alpha, data.test_mask.nonzero().view(-1), data.num_nodes,
                       count=3)
    print("\nattention paid by a few test nodes to their neighbours (last layer, a_ij):")
    for node in nodes:
        sources, weights, self_weight = neighbourhood(edge_index, alpha, node)
        print(f"  node {node} (class {int(data.y[node])}, predicted {int(prediction[node])}), "
              f"{len(sources)} neighbours, self-loop a = {self_weight:.3f}:")
        for src, weight in zip(sources.tolist(), weights.tolist()):
            same = "same class" if int(data.y[src]) == int(data.y[node]) else "other class"
            print(f"    <- {src:5d}  a = {weight:.3f}  (class {int(data.y[src])}, {same})")

    node = nodes[0]
    sources, weights, self_weight = neighbourhood(edge_index, alpha, node)
    path = out_dir / f"cora_attention_node{node}.png"
    draw_neighbourhood(node, sources, weights, self_weight, data.y, prediction, path)
    print(f"\nsaved the attention neighbourhood of node {node} to {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
