"""The key/query/value update on a random directed graph.

Every node holds a vector ``x_i`` and shares three matrices: ``q_i = W_q x_i``
("what am I looking for"), ``k_j = W_k x_j`` ("what do I have"), ``v_j = W_v x_j``
("what do I reveal").  Node ``i`` scores each source ``j`` of an incoming edge
``j -> i`` with ``s_ij = q_i . k_j``, normalises ``a_ij = softmax_j(s_ij)`` and
receives ``u_i = sum_j a_ij v_j``; all updates are computed first, then
``x_i <- x_i + u_i``.  A node with no incoming edge gets ``u_i = 0``.

The script does the update twice, with the stateless op
:func:`pyg_attn.functional.graph_attention` and with the layer
:class:`pyg_attn.nn.KQVConv` (``scale=1.0, residual=True, bias=False``), checks they
agree, prints every node's update and draws the graph.

    python examples/01_kqv_update.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import torch  # noqa: E402

from pyg_attn.functional import graph_attention  # noqa: E402
from _support import output_dir, save_figure  # noqa: E402
from pyg_attn.nn import KQVConv  # noqa: E402


def random_digraph(num_nodes: int, num_edges: int, lonely: int, gen: torch.Generator):
    """Distinct random edges ``j -> i`` (no self-loops), none into node ``lonely``."""
    pairs = torch.randint(0, num_nodes, (2, 4 * num_edges), generator=gen)
    pairs = pairs[:, (pairs[0] != pairs[1]) & (pairs[1] != lonely)]
    pairs = torch.unique(pairs, dim=1)
    return pairs[:, torch.randperm(pairs.size(1), generator=gen)[:num_edges]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8, help="number of nodes (default 8)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_kqv_")

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    n, channels, lonely = args.nodes, 4, args.nodes - 1
    x = torch.randn(n, channels, generator=gen)
    edge_index = random_digraph(n, 2 * n, lonely, gen)  # row 0 = source j, row 1 = target i

    conv = KQVConv(channels, channels, heads=1, scale=1.0, residual=True, bias=False)
    with torch.no_grad():
        q, k, v = conv.lin_query(x), conv.lin_key(x), conv.lin_value(x)
        update, alpha = graph_attention(q, k, v, edge_index, scale=1.0, return_attention=True)
        x_new = x + update                           # synchronous: every u_i from the old x
        from_layer = conv(x, edge_index)
    assert torch.allclose(x_new, from_layer, atol=1e-5), "op and layer disagree"

    print(f"{n} nodes, {edge_index.size(1)} edges j -> i; node {lonely} has no incoming edge")
    for i in range(n):
        incoming = (edge_index[1] == i).nonzero().view(-1)
        weights = ", ".join(f"a[{i},{int(edge_index[0, e])}]={float(alpha[e]):.2f}"
                            for e in incoming)
        print(f"node {i}: |u_i| = {float(update[i].norm()):.3f}   {weights or 'no incoming edge'}")
    print(f"u_{lonely} = {update[lonely].tolist()} -> x_{lonely} unchanged: "
          f"{torch.equal(x_new[lonely], x[lonely])}")

    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from(
        (int(j), int(i), float(a)) for (j, i), a in zip(edge_index.T, alpha))
    pos = nx.circular_layout(graph)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    norms = update.norm(dim=1).tolist()
    nx.draw_networkx_nodes(graph, pos, node_color=norms, cmap="viridis", node_size=700, ax=ax)
    nx.draw_networkx_labels(graph, pos, font_color="white", ax=ax)
    widths = [0.5 + 4 * w for _, _, w in graph.edges(data="weight")]
    nx.draw_networkx_edges(graph, pos, width=widths, arrowsize=15, node_size=700,
                           connectionstyle="arc3,rad=0.1", ax=ax)
    nx.draw_networkx_edge_labels(graph, pos, {(j, i): f"{w:.2f}" for j, i, w in
                                             graph.edges(data="weight")},
                                 font_size=7, connectionstyle="arc3,rad=0.1", ax=ax)
    ax.set_title(f"edge j -> i: weight a_ij; node colour: |u_i| (node {lonely}: 0)")
    ax.axis("off")
    save_figure(fig, out_dir / "kqv_update.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
