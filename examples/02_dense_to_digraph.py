"""Self-attention as a directed graph: a dense attention matrix becomes a weighted DiGraph.

``A = softmax(Q K^T / sqrt(d))`` over the tokens of a sentence: ``A[i, j]`` is how
much token ``i`` attends to token ``j``.  :func:`pyg_attn.convert.dense_to_digraph`
turns it into a networkx graph in message direction: the edge ``j -> i`` carries
``weight = A[i, j]`` (information flows from the attended token ``j`` to ``i``).
Weak edges are dropped with ``threshold``.  The script prints the strongest edges,
checks that every token's incoming weights sum to 1 (before thresholding), goes
back to the matrix, and draws the graph with its weights on the edges.

    python examples/02_dense_to_digraph.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import torch  # noqa: E402

from pyg_attn.convert import dense_to_digraph, digraph_to_dense  # noqa: E402
from pyg_attn.functional import attention_weights  # noqa: E402
from pyg_attn.visualization import draw_attention_graph  # noqa: E402
from _support import output_dir  # noqa: E402

TOKENS = ["the", "cat", "sat", "on", "a", "mat"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.15,
                        help="drop edges with weight <= this (default 0.15)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_digraph_")

    gen = torch.Generator().manual_seed(0)
    embeddings = torch.randn(len(TOKENS), 16, generator=gen)
    w_q, w_k = (torch.randn(16, 16, generator=gen) / 4 for _ in range(2))
    attn = attention_weights(embeddings @ w_q, embeddings @ w_k)
    print("attention A[i, j] (row: query token i, column: key token j):")
    print(attn.numpy().round(2))

    full = dense_to_digraph(attn, labels=TOKENS)
    paid = {t: round(d, 4) for t, d in full.in_degree(weight="weight")}
    print(f"complete graph: {full.number_of_edges()} edges; weight paid per token "
          f"(in-degree, each 1): {paid}")
    G = dense_to_digraph(attn, labels=TOKENS, threshold=args.threshold)
    print(f"threshold {args.threshold}: {G.number_of_edges()} of {full.number_of_edges()} "
          f"edges kept")
    strongest = sorted(G.edges(data="weight"), key=lambda e: -e[2])[:5]
    for j, i, w in strongest:
        print(f"  {i!r:>10} attends to {j!r:<10} weight {w:.3f}   (edge {j} -> {i})")
    back = digraph_to_dense(full, nodelist=TOKENS)
    print(f"back to the matrix: max |A - A'| = {float((back - attn.double()).abs().max()):.1e}")

    path = out_dir / "dense_to_digraph.png"
    draw_attention_graph(G, edge_labels=True, layout="circular",
                         title=f"attention > {args.threshold} as a DiGraph (j -> i)", path=path)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
