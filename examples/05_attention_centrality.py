"""Centrality of an attention graph: attention received and paid, PageRank, betweenness.

A 3-layer GAT is trained on Zachary's karate club (``_support/karate.py``, about a
second) and the attention of its first layer is taken out with
:func:`pyg_attn.nn.capture_attention`.  In message direction (edge ``j -> i``,
``weight = a_ij``) the weighted *out*-degree of ``j`` is the attention it
receives, the *in*-degree of ``i`` the attention it pays (1 for every node, the
softmax).  PageRank follows attention (from ``i`` to ``j`` with probability
``a_ij``), so members that are attended to, directly or through attended members,
rank high; betweenness turns attention into a distance (``-log a``).  The script
prints the top members by each measure next to their plain degree and draws the
attention graph with PageRank as the node colour.

    python examples/05_attention_centrality.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import torch  # noqa: E402

from pyg_attn.analysis import (attention_betweenness, attention_paid,  # noqa: E402
                               attention_pagerank, attention_received)
from pyg_attn.convert import attention_to_networkx  # noqa: E402
from pyg_attn.visualization import draw_attention_graph  # noqa: E402
from _support import output_dir  # noqa: E402
from _support.karate import karate_attention  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150, help="training epochs (default 150)")
    parser.add_argument("--top", type=int, default=5, help="members listed (default 5)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_centrality_")

    karate = karate_attention(epochs=args.epochs)
    print(f"GAT on the karate club: {karate.accuracy:.0%} of members' clubs predicted")
    record = karate.layers[0]  # 4 heads; "weight" is their mean
    G = attention_to_networkx(record)
    measures = {
        "received": attention_received(G),
        "paid": attention_paid(G),
        "pagerank": attention_pagerank(G),
        "betweenness": attention_betweenness(G, distance="neg_log"),
    }
    degree = torch.tensor([d for _, d in karate.graph.degree()])
    print(f"attention paid by every member: min {float(measures['paid'].min()):.4f}, "
          f"max {float(measures['paid'].max()):.4f} (a softmax per member)")
    for name in ("received", "pagerank", "betweenness"):
        values = measures[name]
        top = values.argsort(descending=True)[:args.top].tolist()
        listed = ", ".join(f"{v} ({float(values[v]):.3f}, degree {int(degree[v])})" for v in top)
        print(f"top by {name}: {listed}")
    rank_corr = torch.corrcoef(torch.stack([measures["pagerank"].argsort().argsort().double(),
                                            degree.argsort().argsort().double()]))[0, 1]
    print(f"rank correlation of PageRank with plain degree: {float(rank_corr):.2f}")

    path = out_dir / "attention_centrality.png"
    pagerank = measures["pagerank"].tolist()
    draw_attention_graph(G, node_color=pagerank, node_size=[6000 * p for p in pagerank],
                         self_loops=False, seed=1, figsize=(8, 6.5), path=path,
                         title="karate club, GAT layer 1 (no self-loops): colour = PageRank")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
