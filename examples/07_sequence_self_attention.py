"""Sequence self-attention on a sentence: who attends to whom.

The tokens of a sentence get embeddings (one vector per word, so both "the" share
one, plus a sinusoidal position code) and go through
:class:`pyg_attn.nn.SelfAttention`, the drop-in for
:class:`torch.nn.MultiheadAttention`.  The layer is untrained: the example shows
the mechanics, not linguistics.  Three ways to attend:

- **full**: every token reads every token (the complete directed graph);
- **causal** (``is_causal=True``): a token reads only itself and earlier tokens;
- **window** (``edge_index=``): a token reads its neighbours within two positions,
  sparse attention along a graph's edges (no ``L x L`` matrix is formed).

For each, the script prints the token each token attends to most, and it draws the
full and window attention as directed graphs (``j -> i`` with weight ``a_ij``, from
``SelfAttention.to_networkx``).

    python examples/07_sequence_self_attention.py --out out/
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import torch  # noqa: E402

from pyg_attn.nn import SelfAttention  # noqa: E402
from _support import output_dir, save_figure  # noqa: E402

SENTENCE = "the cat sat on the mat because it was tired"


def embed(tokens: list[str], dim: int, gen: torch.Generator) -> torch.Tensor:
    """One random vector per distinct word plus a sinusoidal position code: ``[L, dim]``."""
    vocabulary = {word: torch.randn(dim, generator=gen) for word in sorted(set(tokens))}
    position = torch.arange(len(tokens)).unsqueeze(1)
    frequency = torch.exp(-torch.arange(0, dim, 2) / dim * torch.log(torch.tensor(100.0)))
    code = torch.zeros(len(tokens), dim)
    code[:, 0::2], code[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return torch.stack([vocabulary[word] for word in tokens]) + 0.5 * code


def window_graph(length: int, radius: int) -> torch.Tensor:
    """Edges ``j -> i`` for ``|i - j| <= radius``: row 0 = key j, row 1 = query i."""
    i, j = torch.cartesian_prod(torch.arange(length), torch.arange(length)).T
    near = (i - j).abs() <= radius
    return torch.stack([j[near], i[near]])


def report(name: str, labels: list[str], weights: torch.Tensor) -> None:
    top = weights.argmax(-1).tolist()
    pairs = ", ".join(f"{labels[i]}->{labels[j]} {float(weights[i, j]):.2f}"
                      for i, j in enumerate(top))
    print(f"{name:>7}: (query->strongest key) {pairs}")


def draw(ax, graph: nx.DiGraph, title: str) -> None:
    # Tokens clockwise from the top, in sentence order.
    angles = [math.pi / 2 - 2 * math.pi * k / len(graph) for k in range(len(graph))]
    pos = {node: (math.cos(a), math.sin(a)) for node, a in zip(graph.nodes, angles)}
    edges = [(j, i) for j, i in graph.edges() if j != i]
    widths = [6 * graph.edges[e]["weight"] for e in edges]
    nx.draw_networkx_nodes(graph, pos, node_color="#cde", node_size=1100, ax=ax)
    nx.draw_networkx_labels(graph, pos, font_size=8, ax=ax)
    nx.draw_networkx_edges(graph, pos, edgelist=edges, width=widths, arrowsize=12,
                           node_size=1100, connectionstyle="arc3,rad=0.15", ax=ax)
    nx.draw_networkx_edge_labels(graph, pos, {e: f"{graph.edges[e]['weight']:.2f}"
                                              for e in edges},
                                 font_size=6, connectionstyle="arc3,rad=0.15", ax=ax)
    ax.set_title(title)
    ax.axis("off")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentence", default=SENTENCE, help=f"text (default: {SENTENCE!r})")
    parser.add_argument("--threshold", type=float, default=0.2,
                        help="draw edges with weight above this (default 0.2)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_sentence_")

    tokens = args.sentence.lower().split()
    labels = [f"{k}:{word}" for k, word in enumerate(tokens)]  # distinct node names
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    dim = 32
    x = embed(tokens, dim, gen).unsqueeze(0)  # [1, L, dim]
    attention = SelfAttention(dim, num_heads=2, batch_first=True).eval()
    with torch.no_grad():
        attention.in_proj_weight.mul_(2.0)  # sharper than the initial weights

        _, full = attention(x, x, x)
        full_graph = attention.to_networkx(labels=labels, threshold=args.threshold)
        _, causal = attention(x, x, x, is_causal=True)
        _, window = attention(x, x, x, edge_index=window_graph(len(tokens), radius=2))
        window_graph_view = attention.to_networkx(labels=labels, threshold=args.threshold)

    print(f"{len(tokens)} tokens: {' '.join(tokens)}")
    for name, weights in (("full", full[0]), ("causal", causal[0]), ("window", window[0])):
        report(name, labels, weights)
    # Attention a token receives = its column sum = its weighted out-degree in the graph.
    received = full[0].sum(0)
    print("most attended tokens (attention received, full):",
          ", ".join(f"{labels[j]} {float(received[j]):.2f}"
                    for j in received.argsort(descending=True)[:3].tolist()))

    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2))
    draw(axes[0], full_graph, f"full attention (a_ij > {args.threshold}, self-loops hidden)")
    draw(axes[1], window_graph_view, "window attention |i - j| <= 2 (edge_index=)")
    save_figure(fig, out_dir / "sequence_self_attention.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
