"""The attention explorer for a heterogeneous GAT: typed nodes, relations, typed rollout.

A synthetic citation graph with three node types: papers (labelled with one of three
topics), authors and topics.  Authors write papers, papers cite papers, papers are
about topics; every relation has its reverse so that every type receives messages.
A two-layer GAT (PyG's ``GATConv``) is made heterogeneous with
:func:`torch_geometric.nn.to_hetero` (one copy per relation, summed per destination),
trained briefly to predict the papers' topics, and run once inside
:func:`pyg_attn.nn.capture_attention`, which records one layer per relation
(``conv1.author__writes__paper``, ...).

:func:`pyg_attn.visualization.explorer` groups those records by layer and writes
``hetero_explorer.html``: the 2-hop neighbourhood of paper 0 with a colour and a
shape per node type, a relation filter beside the layer and head selectors, and
rollout and flow over the typed graph.  The script also prints the relations of the
strongest attention into paper 0 and its rollout shares per node type.

    python examples/hetero_explorer.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from _support import output_dir
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, to_hetero

from pyg_attn.analysis import attention_rollout
from pyg_attn.convert import hetero_attention
from pyg_attn.nn import capture_attention
from pyg_attn.visualization import explorer

TOPICS = 3


def citation_graph(papers: int, authors: int, seed: int) -> HeteroData:
    """Papers near their topic's centre in feature space; authors write on one topic."""
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    topic = torch.randint(0, TOPICS, (papers,), generator=gen)
    centres = 2.0 * torch.randn(TOPICS, 8, generator=gen)
    data["paper"].x = centres[topic] + torch.randn(papers, 8, generator=gen)
    data["paper"].y = topic
    data["author"].x = torch.randn(authors, 8, generator=gen)
    data["topic"].x = torch.eye(TOPICS, 8)
    favourite = torch.randint(0, TOPICS, (authors,), generator=gen)
    writer = torch.randint(0, authors, (3 * papers,), generator=gen)
    on_topic = (favourite[writer].unsqueeze(1) == topic).float()  # papers of the topic
    written = torch.multinomial(on_topic + 0.05, 1, generator=gen).view(-1)
    cited = torch.randint(0, papers, (4 * papers,), generator=gen)
    citing = torch.randint(0, papers, (4 * papers,), generator=gen)
    edges = {("author", "writes", "paper"): torch.stack([writer, written]),
             ("paper", "cites", "paper"): torch.stack([cited, citing]),
             ("topic", "about", "paper"): torch.stack([topic, torch.arange(papers)])}
    for (src, rel, dst), edge_index in edges.items():
        data[src, rel, dst].edge_index = edge_index
        data[dst, f"rev_{rel}", src].edge_index = edge_index.flip(0)
    return data


class GAT(torch.nn.Module):
    """Two GAT layers with lazy input sizes and no self-loops (most relations join two
    node types), for ``to_hetero``."""

    def __init__(self, hidden: int, classes: int, heads: int) -> None:
        super().__init__()
        self.conv1 = GATConv((-1, -1), hidden, heads=heads, add_self_loops=False)
        self.conv2 = GATConv((-1, -1), classes, heads=heads, concat=False,
                             add_self_loops=False)

    def forward(self, x, edge_index):
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=300, help="papers (default 300)")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the page (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_hetero_")

    torch.manual_seed(0)
    data = citation_graph(args.papers, authors=args.papers // 3, seed=0)
    model = to_hetero(GAT(hidden=8, classes=TOPICS, heads=4), data.metadata(), aggr="sum")
    with torch.no_grad():  # the lazy sizes are set on a first call
        model(data.x_dict, data.edge_index_dict)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    train = torch.arange(args.papers) % 2 == 0
    for _ in range(args.epochs):
        model.train()
        optimizer.zero_grad()
        out = model(data.x_dict, data.edge_index_dict)["paper"]
        F.cross_entropy(out[train], data["paper"].y[train]).backward()
        optimizer.step()

    model.eval()
    with torch.no_grad(), capture_attention(model) as records:
        out = model(data.x_dict, data.edge_index_dict)
    accuracy = float((out["paper"].argmax(-1) == data["paper"].y)[~train].float().mean())
    print(f"{sum(data[t].num_nodes for t in data.node_types)} nodes of "
          f"{len(data.node_types)} types, {len(data.edge_types)} relations; "
          f"held-out paper accuracy {accuracy:.2f}")
    print(f"{len(records)} records, e.g. {', '.join(sorted(records)[:3])}, ...")

    typed = hetero_attention(records, data)  # grouped by layer, one node range
    last = typed["conv2"]
    into = (last.edge_index[1] == typed.node_id("paper", 0)).nonzero().view(-1)
    for e in into[last.weight[into].mean(1).argsort(descending=True)][:3].tolist():
        src, rel, _ = typed.edge_types[int(last.relation[e])]
        kind, index = typed.typed_nodes(last.edge_index[0, e:e + 1])
        weight, share = float(last.weight[e].mean()), float(last.alpha[e].mean())
        print(f"conv2: ({typed.node_types[int(kind)]}, {int(index)}) -{rel}-> (paper, 0) "
              f"weight {weight:.3f} (share {share:.3f})")
    row = attention_rollout(typed, targets=[typed.node_id("paper", 0)],
                            num_nodes=typed.num_nodes).to_dense()[0]
    kinds, _ = typed.typed_nodes(torch.arange(typed.num_nodes))
    shares = {t: float(row[kinds == k].sum()) for k, t in enumerate(typed.node_types)}
    print("rollout of (paper, 0) by node type: "
          + ", ".join(f"{t} {s:.2f}" for t, s in shares.items()))

    page = explorer(records, data, node=("paper", 0), hops=2, flow_targets=8,
                    predictions={"paper": out["paper"]}, path=out_dir / "hetero_explorer.html")
    print(f"wrote {out_dir / 'hetero_explorer.html'}: {len(page.data['nodes'])} nodes, "
          f"{len(page.html.encode()) / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
