"""Attention heatmaps: the heads of a sentence's self-attention, and a node's neighbourhood.

Rows are queries/destinations ``i``, columns keys/sources ``j``; ``A[i, j]`` is
how much ``i`` attends to ``j``.  The script computes four-head attention over a
sentence with :func:`pyg_attn.functional.attention_weights` and draws the heads
on one shared colour scale with :func:`pyg_attn.visualization.attention_heatmap`,
printing for each head the key every token attends to most.  It then takes the
first-layer attention of a GAT trained on the karate club (``_support/karate.py``)
and draws the attention among one member's neighbours, per head, without turning
the graph into a dense matrix.

    python examples/06_attention_heatmap.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import torch  # noqa: E402

from pyg_attn.functional import attention_weights  # noqa: E402
from pyg_attn.visualization import attention_heatmap  # noqa: E402
from _support import output_dir  # noqa: E402
from _support.karate import karate_attention  # noqa: E402

TOKENS = ["a", "graph", "is", "a", "set", "of", "nodes", "and", "edges"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--member", type=int, default=0,
                        help="karate club member whose neighbourhood is drawn (default 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the pictures (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_heatmap_")

    gen = torch.Generator().manual_seed(0)
    tokens = [f"{t}_{k}" if TOKENS.count(t) > 1 else t for k, t in enumerate(TOKENS)]
    x = torch.randn(len(tokens), 32, generator=gen)
    query, key = (torch.einsum("lc,hcd->hld", x, torch.randn(args.heads, 32, 8, generator=gen))
                  for _ in range(2))
    attn = attention_weights(query, key)  # [H, L, L]
    for h in range(args.heads):
        favourite = attn[h].argmax(-1).tolist()
        pairs = ", ".join(f"{tokens[i]}->{tokens[j]}" for i, j in enumerate(favourite))
        print(f"head {h}: mean max weight {float(attn[h].amax(-1).mean()):.2f}; "
              f"each token's favourite key: {pairs}")
    path = out_dir / "sentence_heads.png"
    attention_heatmap(attn, x_labels=tokens, y_labels=tokens, ncols=2,
                      title="self-attention per head (row: query, column: key)", path=path)
    print(f"saved {path}")

    karate = karate_attention()
    record = karate.layers[0]
    incoming = record.edge_index[1] == args.member
    print(f"karate club, GAT layer 1: member {args.member} attends over "
          f"{int(incoming.sum())} members (itself included), per head:")
    for j, weights in zip(record.edge_index[0, incoming].tolist(), record.alpha[incoming]):
        print(f"  {j:>2}: " + " ".join(f"{w:.2f}" for w in weights.tolist()))
    path = out_dir / f"karate_member{args.member}_neighbourhood.png"
    attention_heatmap(record, node=args.member, hops=1, ncols=2,
                      title=f"attention among member {args.member}'s neighbours", path=path)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
