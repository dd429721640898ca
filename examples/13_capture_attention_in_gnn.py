"""Attention inside a GNN: capture every layer's weights of a PyG model and draw one node's.

Builds PyG's own :class:`torch_geometric.nn.models.GAT` (2 layers, 8 heads) on the
embedded Cora data set, trains it briefly, and runs it once inside
:func:`pyg_attn.nn.capture_attention`, which records each attention layer's
``edge_index``, ``alpha`` ``[E', H]`` and ``edge_id`` (position in the
``edge_index`` the model was given; ``-1`` for the self-loop a layer adds) without
changing the model's output.  The script checks that the weights of every node sum
to 1, prints what each layer attends to around one paper, and draws that paper's
1-hop attention neighbourhood (last layer, mean over heads) with
:func:`pyg_attn.visualization.draw_attention_graph`.

    python examples/13_capture_attention_in_gnn.py --out out/
    python examples/13_capture_attention_in_gnn.py --quick
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch_geometric.nn.models import GAT  # noqa: E402
from torch_geometric.utils import scatter  # noqa: E402

from pyg_attn.convert import to_networkx  # noqa: E402
from pyg_attn.datasets import load_dataset  # noqa: E402
from pyg_attn.nn import capture_attention  # noqa: E402
from pyg_attn.visualization import draw_attention_graph  # noqa: E402
from _support import output_dir  # noqa: E402


def train(model: torch.nn.Module, data, epochs: int) -> float:
    """A few full-batch epochs on the public split; returns the test accuracy."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index)
        F.cross_entropy(out[data.train_mask], data.y[data.train_mask]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(dim=-1)
    return float((pred[data.test_mask] == data.y[data.test_mask]).float().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    parser.add_argument("--quick", action="store_true", help="5 epochs: for the tests")
    parser.add_argument("--node", type=int, default=2, help="paper to look at (default 2)")
    parser.add_argument("--top", type=int, default=6, help="neighbours listed per layer (default 6)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_capture_")
    epochs = 5 if args.quick else args.epochs

    torch.manual_seed(0)
    data = load_dataset("Cora")[0]
    if not 0 <= args.node < data.num_nodes:
        parser.error(f"--node must be in [0, {data.num_nodes})")
    model = GAT(data.num_features, 8, num_layers=2, out_channels=7, v2=False, heads=8,
                dropout=0.6)
    accuracy = train(model, data, epochs)
    print(f"PyG's models.GAT on Cora after {epochs} epochs: test accuracy {accuracy:.1%}")

    with torch.no_grad():
        plain = model(data.x, data.edge_index)
        with capture_attention(model) as records:
            captured = model(data.x, data.edge_index)
    assert torch.equal(plain, captured), "capturing changed the output"

    node = args.node
    for name, record in records.items():
        sums = scatter(record.alpha, record.edge_index[1], dim=0, dim_size=data.num_nodes)
        loops = int((record.edge_id == -1).sum())
        print(f"layer {name!r}: {record.alpha.size(0)} weights x {record.alpha.size(1)} heads "
              f"({loops} self-loops added by the layer); every node's weights sum to 1: "
              f"{bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-5))}")
        incoming = (record.edge_index[1] == node).nonzero().view(-1)
        mean = record.alpha[incoming].mean(dim=1)
        order = mean.argsort(descending=True)
        listed = ", ".join(
            f"{int(record.edge_index[0, incoming[k]])}"
            f"{' (itself)' if int(record.edge_id[incoming[k]]) == -1 else ''}: "
            f"{float(mean[k]):.2f}" for k in order[:args.top])
        print(f"  paper {node} (class {int(data.y[node])}, {incoming.numel()} weights) attends "
              f"most to {listed}")

    last = records[list(records)[-1]]
    graph = to_networkx(data, attention=last, node_attrs=["y"])
    path = out_dir / f"cora_node{node}_attention.png"
    draw_attention_graph(graph, node=node, hops=1, edge_labels=True, node_color=[
        graph.nodes[v]["y"] for v in graph.nodes], title=f"paper {node}: last layer (mean of heads)",
        path=path)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
