"""Computing dense attention weights, and the same weights on a complete graph.

``A = softmax(Q K^T / sqrt(d))``: ``A[i, j]`` is how much query ``i`` attends to
key ``j``, every row sums to 1.  The script computes ``A`` with
:func:`pyg_attn.functional.attention_weights` (plain and causal), checks it against
the textbook formula, and computes it again as graph attention along the edges
``j -> i`` of the complete directed graph
(:func:`~pyg_attn.functional.complete_graph_edge_index`): one weight per edge, the
same numbers.  It saves both matrices as a picture.

    python examples/03_dense_attention_weights.py --out out/
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pyg_attn.functional import (  # noqa: E402
    attention_weights, complete_graph_edge_index, graph_attention)
from _support import output_dir, save_figure  # noqa: E402


def show(ax, weights: torch.Tensor, title: str) -> None:
    ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0)
    for (i, j), value in zip(torch.cartesian_prod(*map(torch.arange, weights.shape)).tolist(),
                             weights.flatten().tolist()):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.5 else "black")
    ax.set_xlabel("key j")
    ax.set_ylabel("query i")
    ax.set_title(title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=6, help="sequence length (default 6)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_dense_")

    gen = torch.Generator().manual_seed(0)
    length, dim = args.length, 8
    query, key, value = (torch.randn(length, dim, generator=gen) for _ in range(3))

    weights = attention_weights(query, key)
    textbook = torch.softmax(query @ key.T / math.sqrt(dim), dim=-1)
    print(f"A = softmax(Q K^T / sqrt({dim})), shape {list(weights.shape)}:")
    print(weights.numpy().round(3))
    print("row sums:", weights.sum(-1).numpy().round(6))
    print(f"max |A - textbook softmax| = {float((weights - textbook).abs().max()):.1e}")

    causal = attention_weights(query, key, mask=torch.ones(length, length).tril().bool())
    print("causal (query i sees keys j <= i): upper triangle is zero:",
          bool((causal.triu(1) == 0).all()))

    # The graph view: edges j -> i of the complete graph, one attention weight each.
    edge_index = complete_graph_edge_index(length)
    out, alpha = graph_attention(query, key, value, edge_index, return_attention=True)
    as_matrix = torch.zeros(length, length).index_put((edge_index[1], edge_index[0]), alpha)
    print(f"complete graph: {edge_index.size(1)} edges; max |A_graph - A| = "
          f"{float((as_matrix - weights).abs().max()):.1e}, max |out - A V| = "
          f"{float((out - weights @ value).abs().max()):.1e}")
    causal_edges = complete_graph_edge_index(length, causal=True)
    print(f"causal graph: {causal_edges.size(1)} edges (j <= i) instead of {length ** 2}")

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.3))
    show(axes[0], weights, "A = softmax(QK^T / sqrt(d))")
    show(axes[1], causal, "causal mask (j <= i)")
    save_figure(fig, out_dir / "dense_attention_weights.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
