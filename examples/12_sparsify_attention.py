"""Sparse attention by thresholding: keep the edges that carry the attention.

Most of a softmax's mass often sits on a few edges.
:func:`pyg_attn.analysis.sparsify_attention` keeps, per destination, the edges with
weight >= a threshold, the top-k, or the smallest set reaching a share p of the
mass (top-p), and reports the share of attention kept.  The script does this for
the first layer of a GAT trained on the karate club (``_support/karate.py``),
checks how much the rollout over all layers changes when every layer is
sparsified (and renormalised), and draws the attention graph before and after.

    python examples/12_sparsify_attention.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402

from pyg_attn.analysis import attention_rollout, sparsify_attention  # noqa: E402
from pyg_attn.convert import attention_to_networkx  # noqa: E402
from pyg_attn.visualization import draw_attention_graph  # noqa: E402
from _support import output_dir, save_figure  # noqa: E402
from _support.karate import karate_attention  # noqa: E402

SETTINGS = [{"threshold": 0.1}, {"threshold": 0.2}, {"top_k": 2}, {"top_k": 4},
            {"top_p": 0.5}, {"top_p": 0.9}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top-p", type=float, default=0.5,
                        help="share of mass kept in the picture (default 0.5)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_sparsify_")

    karate = karate_attention()
    layer = karate.layers[0]
    num_edges = layer.edge_index.size(1)
    full = attention_rollout(karate.layers).to_dense()
    print(f"GAT on the karate club, layer 1: {num_edges} edges (self-loops included), "
          f"{layer.alpha.size(1)} heads")
    print(f"{'criterion':<16}{'edges kept':>12}{'mass kept':>11}{'rollout change':>16}")
    for setting in SETTINGS:
        kept = sparsify_attention(layer, **setting)
        sparse_layers = [sparsify_attention(record, renormalize=True, **setting)[:2]
                         for record in karate.layers]
        change = (attention_rollout(sparse_layers, num_nodes=34).to_dense() - full).abs()
        name, value = next(iter(setting.items()))
        print(f"{name + ' ' + str(value):<16}{kept.edge_index.size(1):>7} / {num_edges}"
              f"{kept.kept_mass:>10.1%}{float(change.sum(1).max()) / 2:>15.3f}")
    print("(rollout change: the largest total-variation distance between a member's rollout "
          "row before and after, 0 = same, 1 = disjoint)")

    kept = sparsify_attention(layer, top_p=args.top_p)
    before = attention_to_networkx(layer)
    after = attention_to_networkx(kept.edge_index, kept.alpha, num_nodes=34)
    pos = nx.spring_layout(nx.Graph(before.edges), seed=1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    draw_attention_graph(before, layout=pos, ax=left, self_loops=False, colorbar=False,
                         node_size=180, title=f"all {num_edges} edges")
    draw_attention_graph(after, layout=pos, ax=right, self_loops=False, node_size=180,
                         title=f"top-p {args.top_p}: {after.number_of_edges()} edges, "
                               f"{kept.kept_mass:.0%} of the mass")
    path = out_dir / "sparsify_attention.png"
    save_figure(fig, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
